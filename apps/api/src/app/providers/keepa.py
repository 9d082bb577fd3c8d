"""Keepa client: a category's Amazon best sellers and their product data, within Keepa's tokens.

Keepa meters its API in tokens: a plan refills `refillRate` tokens per minute,
`/bestsellers` costs 50 tokens and `/product` one per ASIN (`/token` is free). Every answer
reports the balance (`tokensLeft`), when the next refill comes (`refillIn`, milliseconds)
and the refill rate; HTTP 429 means "not enough tokens". This client keeps that report,
projects it forward, and raises `QuotaExhaustedError` with the moment enough tokens will be
there instead of sending a request that would bounce, so a run waits rather than fails and
never hammers the API.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final, TypeGuard

import httpx

from app.core.clock import Clock, utcnow
from app.core.config import Settings
from app.providers.base import Product, ProviderError, QuotaExhaustedError

logger = logging.getLogger(__name__)


PROVIDER: Final = "keepa"
KEEPA_TOKENS: Final = "Keepa API tokens, which refill every minute"
"""Which limit a run out of Keepa tokens waits for (shown on its page)."""
MAX_ASINS_PER_REQUEST: Final = 100
"""Keepa's limit of ASINs in one `/product` request."""
BESTSELLERS_TOKEN_COST: Final = 50
REFILL_INTERVAL: Final = timedelta(minutes=1)
"""`refillRate` is per minute: that many tokens arrive at each refill, one minute apart."""
BEST_SELLER_LIST_TTL: Final = timedelta(hours=1)
"""How long a fetched best-seller list is reused (Keepa updates the lists daily)."""
_LIST_CACHE_SIZE: Final = 256

# Indexes into a product's `csv` and `stats.current` arrays (Keepa's Product.CsvType).
CSV_AMAZON: Final = 0
CSV_NEW: Final = 1
# Price types in the order they stand for "the current price": Amazon's own offer, else
# the lowest new third-party offer.
_PRICE_TYPES: Final = (CSV_AMAZON, CSV_NEW)

# Keepa domain id -> (ISO currency, digits of its smallest unit). Keepa prices are integers
# in the locale's smallest currency unit (cents, pence, yen), -1 when there is no offer.
DOMAIN_CURRENCIES: Final[Mapping[int, tuple[str, int]]] = {
    1: ("USD", 2),
    2: ("GBP", 2),
    3: ("EUR", 2),
    4: ("EUR", 2),
    5: ("JPY", 0),
    6: ("CAD", 2),
    8: ("EUR", 2),
    9: ("EUR", 2),
    10: ("INR", 2),
    11: ("MXN", 2),
    12: ("BRL", 2),
}


@dataclass(frozen=True, slots=True)
class KeepaTokens:
    """Keepa's token balance as its last answer reported it, and how it refills."""

    tokens_left: int
    refill_in: timedelta
    """Until the next refill."""
    refill_rate: int
    """Tokens added at each refill (one refill per `REFILL_INTERVAL`)."""
    observed_at: datetime

    def projected(self, at: datetime, interval: timedelta = REFILL_INTERVAL) -> int:
        """The balance expected at `at`, counting the refills since the report."""
        first_refill = self.observed_at + self.refill_in
        if at < first_refill or self.refill_rate <= 0:
            return self.tokens_left
        refills = 1 + int((at - first_refill) / interval)
        return self.tokens_left + refills * self.refill_rate

    def available_at(self, needed: int, interval: timedelta = REFILL_INTERVAL) -> datetime:
        """The first refill after which the balance reaches `needed` tokens."""
        if self.tokens_left >= needed:
            return self.observed_at
        first_refill = self.observed_at + self.refill_in
        if self.refill_rate <= 0:  # no rate reported: all we know is the next refill
            return first_refill
        refills = math.ceil((needed - self.tokens_left) / self.refill_rate)
        return first_refill + (refills - 1) * interval


class _TokenBudget:
    """Keepa's last token report, projected forward, minus the cost of requests sent since.

    Keepa serves a request while the balance is positive and charges it even if that takes
    the balance below zero (Keepa's Python client waits out negative balances), so a
    request is sent when the projected balance is above zero. Each request reserves its cost here
    synchronously, so concurrent callers cannot all spend the same tokens; the next answer
    replaces the projection with Keepa's own count.
    """

    def __init__(self, clock: Clock, interval: timedelta) -> None:
        self._clock = clock
        self._interval = interval
        self.last: KeepaTokens | None = None
        self._spent_since = 0

    def observe(self, body: Mapping[str, Any]) -> bool:
        """Take the balance from an answer; False if it has none (e.g. a proxy's error)."""
        left, refill_in, rate = (body.get(k) for k in ("tokensLeft", "refillIn", "refillRate"))
        if _is_int(left) and _is_int(refill_in) and _is_int(rate):
            self.last = KeepaTokens(
                tokens_left=left,
                refill_in=timedelta(milliseconds=max(0, refill_in)),
                refill_rate=rate,
                observed_at=self._clock(),
            )
            self._spent_since = 0
            return True
        return False

    def reserve(self, cost: int) -> None:
        """Count `cost` tokens as spent, or raise QuotaExhaustedError if none are left."""
        if self.last is not None:
            now = self._clock()
            balance = self.last.projected(now, self._interval) - self._spent_since
            if balance <= 0:
                resume_at = self._future(
                    self.last.available_at(self._spent_since + 1, self._interval), now
                )
                raise QuotaExhaustedError(
                    f"Keepa tokens used up (balance {balance}, {self.last.refill_rate} "
                    f"tokens per minute); continuing at {resume_at:%H:%M:%S} UTC",
                    provider=PROVIDER,
                    resume_at=resume_at,
                    limit=KEEPA_TOKENS,
                )
        self._spent_since += cost

    def _future(self, resume_at: datetime, now: datetime) -> datetime:
        """`resume_at`, or a refill interval from now if a report without refill data (no
        rate, refillIn 0) puts it in the past: a run must not retry at once."""
        return resume_at if resume_at > now else now + self._interval

    def exhausted(self, cost: int, status_code: int, *, reported: bool) -> QuotaExhaustedError:
        """The error for Keepa's "not enough tokens" answer to a request of `cost`.

        `reported`: whether that answer carried the balance. If it did, the wait lasts
        until the balance covers `cost` (at least until the next refill); if not, one
        refill interval, so that a run never retries at once into the same refusal.
        """
        now = self._clock()
        if reported and self.last is not None:
            resume_at = self._future(
                max(
                    self.last.available_at(cost, self._interval),
                    self.last.observed_at + self.last.refill_in,
                ),
                now,
            )
        else:
            resume_at = now + self._interval
        return QuotaExhaustedError(
            f"Keepa has not enough tokens for a request of {cost} (HTTP {status_code}); "
            f"continuing at {resume_at:%H:%M:%S} UTC",
            provider=PROVIDER,
            resume_at=resume_at,
            status_code=status_code,
            limit=KEEPA_TOKENS,
        )


class KeepaAmazonProvider:
    """Amazon best sellers from Keepa: `/bestsellers` for the ranking, `/product` for details.

    One instance per process shares its token accounting (and a short-lived cache of
    best-seller lists, so a category retried after waiting for tokens is not charged its
    list twice) across every run of the process.
    """

    name = PROVIDER

    def __init__(
        self,
        *,
        api_key: str,
        http: httpx.AsyncClient,
        base_url: str = "https://api.keepa.com",
        domain: int = 1,
        bestsellers_range: int = 0,
        clock: Clock = utcnow,
        refill_interval: timedelta = REFILL_INTERVAL,
        list_ttl: timedelta = BEST_SELLER_LIST_TTL,
        request_timeout: float = 30.0,
    ) -> None:
        if domain not in DOMAIN_CURRENCIES:
            raise ValueError(
                f"unknown Keepa domain {domain}; use one of {sorted(DOMAIN_CURRENCIES)}"
            )
        self._api_key = api_key
        self._http = http
        self.base_url = base_url.rstrip("/")
        self.domain = domain
        self.bestsellers_range = bestsellers_range
        self.currency, self._minor_digits = DOMAIN_CURRENCIES[domain]
        self._clock = clock
        self._list_ttl = list_ttl
        # Per request, whatever the shared client's default: the resilience layer bounds
        # the whole call with PROVIDER_TIMEOUT_SECONDS, and a request cut short by a
        # shorter client timeout would be retried and charged again.
        self._timeout = httpx.Timeout(request_timeout)
        self.tokens = _TokenBudget(clock, refill_interval)
        self._lists: OrderedDict[tuple[str, int], tuple[datetime, list[str]]] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Settings, http: httpx.AsyncClient) -> KeepaAmazonProvider:
        """The client configured by the KEEPA_* settings."""
        if settings.keepa_api_key is None:
            raise ValueError("AMAZON_PROVIDER=keepa needs KEEPA_API_KEY")
        return cls(
            api_key=settings.keepa_api_key.get_secret_value().strip(),
            http=http,
            base_url=settings.keepa_api_url,
            domain=settings.keepa_domain,
            bestsellers_range=settings.keepa_bestsellers_range,
            request_timeout=settings.provider_timeout_seconds,
        )

    async def best_sellers(
        self, category_id: str, limit: int, *, as_of: datetime | None = None
    ) -> list[Product]:
        """Up to `limit` best sellers of `category_id`, best first, with their product data.

        Keepa answers with the present (or its cache of the last hour): `as_of` is ignored.

        `sales_rank` is the product's place in the category's list (1 = best selling).
        ASINs Keepa has no product data (or no title) for are left out.
        """
        if limit <= 0:
            return []
        asins = await self._best_seller_asins(category_id, limit)
        details: dict[str, Mapping[str, Any]] = {}
        for start in range(0, len(asins), MAX_ASINS_PER_REQUEST):
            details.update(await self._product_data(asins[start : start + MAX_ASINS_PER_REQUEST]))
        products = []
        for rank, asin in enumerate(asins, start=1):
            raw = details.get(asin)
            product = None if raw is None else self._product(raw, category_id, rank)
            if product is None:
                logger.info("Keepa has no product data for ASIN %s; skipped", asin)
                continue
            products.append(product)
        return products

    async def token_status(self) -> KeepaTokens:
        """Keepa's current token balance (the `/token` request is free)."""
        await self._get("token", {}, cost=0)
        assert self.tokens.last is not None  # _get refuses answers without the token fields
        return self.tokens.last

    # --- requests -----------------------------------------------------------------------

    async def _best_seller_asins(self, category_id: str, limit: int) -> list[str]:
        key = (category_id, limit)
        cached = self._lists.get(key)
        if cached is not None and self._clock() - cached[0] < self._list_ttl:
            return cached[1]
        body = await self._get(
            "bestsellers",
            {
                "domain": self.domain,
                "category": category_id,
                "range": self.bestsellers_range,
            },
            cost=BESTSELLERS_TOKEN_COST,
        )
        listing = body.get("bestSellersList")
        if listing is None:  # Keepa has no list for this category
            logger.warning("Keepa has no best-seller list for category %s", category_id)
            asins: list[str] = []
        else:
            if not isinstance(listing, dict):
                raise _malformed("bestSellersList is not an object")
            raw_asins = listing.get("asinList") or []
            if not isinstance(raw_asins, list) or not all(
                isinstance(a, str) or a is None for a in raw_asins
            ):
                raise _malformed("bestSellersList.asinList is not a list of ASINs")
            asins = list(dict.fromkeys(a for a in raw_asins if a))[:limit]
        self._lists[key] = (self._clock(), asins)
        self._lists.move_to_end(key)
        while len(self._lists) > _LIST_CACHE_SIZE:
            self._lists.popitem(last=False)
        return asins

    async def _product_data(self, asins: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        body = await self._get(
            "product",
            # `stats` adds the current prices and ranks (computed from the history, free).
            {"domain": self.domain, "asin": ",".join(asins), "stats": 1},
            cost=len(asins),
        )
        products = body.get("products")
        if not isinstance(products, list):
            raise _malformed("the product answer has no products list")
        found: dict[str, Mapping[str, Any]] = {}
        for raw in products:
            if not isinstance(raw, dict) or not isinstance(raw.get("asin"), str):
                raise _malformed("a product without an ASIN")
            found[raw["asin"]] = raw
        return found

    async def _get(
        self, path: str, params: Mapping[str, str | int], *, cost: int
    ) -> dict[str, Any]:
        """One GET request: tokens reserved first, the balance taken from the answer."""
        if cost:
            self.tokens.reserve(cost)
        response = await self._http.get(
            f"{self.base_url}/{path}",
            params={"key": self._api_key, **params},
            timeout=self._timeout,
        )
        body: dict[str, Any] | None
        try:
            decoded = response.json()
        except ValueError:
            decoded = None
        body = decoded if isinstance(decoded, dict) else None
        reported = body is not None and self.tokens.observe(body)
        status = response.status_code
        if status == httpx.codes.TOO_MANY_REQUESTS:
            raise self.tokens.exhausted(cost, status, reported=reported)
        if status >= 500:
            raise ProviderError(
                f"Keepa answered HTTP {status}{_error_detail(body)}",
                provider=PROVIDER,
                retryable=True,
                status_code=status,
            )
        if status >= 400:
            raise ProviderError(
                _client_error_message(status, body),
                provider=PROVIDER,
                retryable=False,
                status_code=status,
            )
        if body is None:
            raise _malformed(f"the /{path} answer (HTTP {status}) is not a JSON object")
        if body.get("error"):
            raise ProviderError(
                f"Keepa refused the /{path} request{_error_detail(body)}",
                provider=PROVIDER,
                retryable=False,
                status_code=status,
            )
        if not reported:
            raise _malformed(f"the /{path} answer lacks tokensLeft, refillIn or refillRate")
        return body

    # --- parsing ------------------------------------------------------------------------

    def _product(self, raw: Mapping[str, Any], category_id: str, rank: int) -> Product | None:
        asin = raw["asin"]
        title = _optional_str(raw, "title", asin)
        if not title or not title.strip():
            return None
        brand = (_optional_str(raw, "brand", asin) or "").strip()
        return Product(
            asin=asin,
            title=title.strip(),
            category_id=category_id,
            sales_rank=rank,
            brand=brand or None,
            price=self._price(raw, asin),
            currency=self.currency,
            upcs=_codes(raw, "upcList", asin),
            eans=_codes(raw, "eanList", asin),
        )

    def _price(self, raw: Mapping[str, Any], asin: str) -> Decimal | None:
        """The current price: from `stats.current`, else the last point of the `csv` history."""
        stats = raw.get("stats")
        current: list[int] = []
        if stats is not None:
            if not isinstance(stats, dict):
                raise _malformed(f"stats of {asin} is not an object")
            current = _int_list(stats.get("current"), f"stats.current of {asin}")
        csv = raw.get("csv")
        if csv is not None and not isinstance(csv, list):
            raise _malformed(f"csv of {asin} is not a list")
        for index in _PRICE_TYPES:
            cents = current[index] if index < len(current) else -1
            if cents < 0 and csv is not None and index < len(csv) and csv[index] is not None:
                history = _int_list(csv[index], f"csv[{index}] of {asin}")
                cents = history[-1] if len(history) >= 2 else -1  # [time, value, ...]
            if cents >= 0:
                return Decimal(cents).scaleb(-self._minor_digits)
        return None


def _malformed(what: str) -> ProviderError:
    return ProviderError(
        f"Keepa sent a malformed response: {what}", provider=PROVIDER, retryable=False
    )


def _optional_str(raw: Mapping[str, Any], field: str, asin: str) -> str | None:
    value = raw.get(field)
    if value is not None and not isinstance(value, str):
        raise _malformed(f"{field} of {asin} is not a string")
    return value


def _codes(raw: Mapping[str, Any], field: str, asin: str) -> tuple[str, ...]:
    """A UPC/EAN list: digits only, duplicates dropped, Keepa's order (primary first) kept."""
    values = raw.get(field)
    if values is None:
        return ()
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise _malformed(f"{field} of {asin} is not a list of strings")
    return tuple(dict.fromkeys(v.strip() for v in values if v.strip().isdigit()))


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_list(value: object, what: str) -> list[int]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(_is_int(v) for v in value):
        raise _malformed(f"{what} is not a list of integers")
    return value


def _error_detail(body: Mapping[str, Any] | None) -> str:
    """`: type: message (details)` from the body's `error` object, or nothing."""
    error = body.get("error") if body else None
    if not isinstance(error, dict):
        return ""
    parts = [str(error[k]) for k in ("type", "message") if error.get(k)]
    detail = ": ".join(parts)
    if error.get("details"):
        detail = f"{detail} ({error['details']})"
    return f": {detail}" if detail else ""


def _client_error_message(status: int, body: Mapping[str, Any] | None) -> str:
    if status == httpx.codes.PAYMENT_REQUIRED:
        return (
            f"Keepa requires payment (HTTP 402){_error_detail(body)}; the plan of "
            "KEEPA_API_KEY has no API access left"
        )
    if status == httpx.codes.BAD_REQUEST:
        return (
            f"Keepa rejected the request (HTTP 400){_error_detail(body)}; "
            "check KEEPA_API_KEY, KEEPA_DOMAIN and the category IDs"
        )
    return f"Keepa answered HTTP {status}{_error_detail(body)}"
