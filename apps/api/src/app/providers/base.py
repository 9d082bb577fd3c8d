"""What the pipeline asks of marketplaces: Amazon best sellers and eBay listings."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Product:
    """An Amazon product found among a category's best sellers."""

    asin: str
    title: str
    category_id: str
    sales_rank: int
    brand: str | None = None
    price: Decimal | None = None
    currency: str = "USD"
    upcs: tuple[str, ...] = field(default_factory=tuple)
    eans: tuple[str, ...] = field(default_factory=tuple)

    @property
    def gtin(self) -> str | None:
        """The best identifier to search other marketplaces by: a UPC, else an EAN."""
        if self.upcs:
            return self.upcs[0]
        if self.eans:
            return self.eans[0]
        return None


@dataclass(frozen=True, slots=True)
class Listing:
    """An eBay listing of a product, with the seller who lists it."""

    item_id: str
    title: str
    price: Decimal | None
    currency: str
    seller_username: str
    seller_feedback_score: int | None
    seller_feedback_percentage: Decimal | None
    url: str


class ProviderError(Exception):
    """A provider call failed.

    `retryable` marks failures worth another attempt (throttling, 5xx, timeouts);
    `retry_after` is the provider's own hint in seconds, when it gave one.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        retryable: bool,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.retryable = retryable
        self.status_code = status_code
        self.retry_after = retry_after


class QuotaExhaustedError(ProviderError):
    """The provider's quota is used up until `resume_at` (Keepa tokens, eBay's daily calls).

    Not a failure and not worth retrying sooner: the run waits until `resume_at` (showing
    it in its detail) and then continues from its checkpoint. Clients raise it with a
    `resume_at` in the future, so that a run never spins.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        resume_at: datetime,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message, provider=provider, retryable=False, status_code=status_code)
        self.resume_at = resume_at


class AmazonProvider(Protocol):
    """Source of a category's best-selling products."""

    name: str

    async def best_sellers(self, category_id: str, limit: int) -> list[Product]:
        """Up to `limit` best sellers of `category_id`, best first."""
        ...


class EbayProvider(Protocol):
    """Source of eBay listings for a product."""

    name: str

    async def search(self, product: Product, limit: int) -> list[Listing]:
        """Up to `limit` listings of the same item as `product`."""
        ...
