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
        """The best identifier to search other marketplaces by: the first valid UPC, else
        the first valid EAN (catalog data holds malformed codes too)."""
        return next((code for code in (*self.upcs, *self.eans) if is_gtin(code)), None)


GTIN_LENGTHS = (8, 12, 13, 14)


def gtin_check_digit(body: str) -> str:
    """The GS1 check digit of `body` (a GTIN without its last digit)."""
    total = 3 * sum(map(int, body[::-2])) + sum(map(int, body[-2::-2]))
    return str(-total % 10)


def is_gtin(code: str) -> bool:
    """Whether `code` is a GTIN-8, UPC-A (GTIN-12), EAN-13 or GTIN-14 with a right check digit."""
    return (
        len(code) in GTIN_LENGTHS
        and code.isascii()
        and code.isdigit()
        and gtin_check_digit(code[:-1]) == code[-1]
    )


@dataclass(frozen=True, slots=True)
class Listing:
    """An eBay listing of a product, with the seller who lists it.

    `shipping` is what the buyer pays for shipping (0: free), None when the marketplace
    does not say (calculated at checkout, or not given)."""

    item_id: str
    title: str
    price: Decimal | None
    currency: str
    seller_username: str
    seller_feedback_score: int | None
    seller_feedback_percentage: Decimal | None
    url: str
    shipping: Decimal | None = None
    shipping_currency: str | None = None


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
    it, and `limit`, which limit it waits for, in its detail) and then continues from its
    checkpoint. Clients raise it with a `resume_at` in the future, so that a run never spins.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        resume_at: datetime,
        status_code: int | None = None,
        limit: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider, retryable=False, status_code=status_code)
        self.resume_at = resume_at
        self.limit = limit


class AmazonProvider(Protocol):
    """Source of a category's best-selling products.

    `as_of` asks for the market as it was at that moment: a run passes its creation time,
    so that a run resumed later (after a pause, a crash, a takeover) reads the market of
    the day it was created. Only the offline sample market can honour it (it drifts by
    market day); the real marketplaces answer with the present and ignore it.
    """

    name: str

    async def best_sellers(
        self, category_id: str, limit: int, *, as_of: datetime | None = None
    ) -> list[Product]:
        """Up to `limit` best sellers of `category_id`, best first (as of `as_of`, where the
        provider can tell)."""
        ...


class EbayProvider(Protocol):
    """Source of eBay listings for a product; `as_of` as for `AmazonProvider`."""

    name: str

    async def search(
        self, product: Product, limit: int, *, as_of: datetime | None = None
    ) -> list[Listing]:
        """Up to `limit` listings of the same item as `product` (as of `as_of`, where the
        provider can tell)."""
        ...
