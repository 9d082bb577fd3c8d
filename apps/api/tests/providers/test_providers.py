"""Sample providers and the resilience layer: determinism, realism, rate limits and retries."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import statistics
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from app.providers import build_providers
from app.providers.base import Listing, Product, ProviderError, QuotaExhaustedError
from app.providers.resilience import (
    MAX_RETRY_AFTER,
    ProviderFailedError,
    RateLimiter,
    ResilientAmazonProvider,
    ResilientEbayProvider,
    RetryPolicy,
)
from app.providers.sample import (
    SampleAmazonProvider,
    SampleEbayProvider,
    sample_seller,
)
from tests.helpers.samples import forget_sample_market
from tests.helpers.settings import make_settings

CATEGORY = "172282"
CATEGORIES = [CATEGORY, "284507", "165793011", *(str(1_000 + i) for i in range(17))]
AS_OF = datetime(2027, 1, 15, 12, tzinfo=UTC)
"""The sample market drifts by day: tests that compare calls ask for one moment's market."""


class FakeTime:
    """A monotonic clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def is_valid_gtin(code: str) -> bool:
    """GS1 check: from the right, digits weigh 1, 3, 1, 3, ... and sum to a multiple of 10."""
    weights = [1 if i % 2 == 0 else 3 for i in range(len(code))]
    digits = [int(d) for d in reversed(code)]
    return code.isdigit() and sum(d * w for d, w in zip(digits, weights, strict=True)) % 10 == 0


async def all_products(limit: int = 50) -> list[Product]:
    amazon = SampleAmazonProvider()
    products = []
    for category in CATEGORIES:
        products += await amazon.best_sellers(category, limit, as_of=AS_OF)
    return products


# --- sample Amazon ----------------------------------------------------------------------


async def test_best_sellers_are_deterministic_and_ranked() -> None:
    first = await SampleAmazonProvider().best_sellers(CATEGORY, 50, as_of=AS_OF)
    forget_sample_market()  # regenerate, rather than read the caches
    second = await SampleAmazonProvider().best_sellers(CATEGORY, 50, as_of=AS_OF)
    assert first == second
    assert [p.sales_rank for p in first] == list(range(1, 51))
    assert len({p.asin for p in first}) == 50
    for product in first:
        assert re.fullmatch(r"B0[A-Z0-9]{8}", product.asin)
        assert product.category_id == CATEGORY
        assert product.currency == "USD"
        assert product.brand
        assert product.title.startswith(product.brand)
        assert product.price is not None
        assert product.price > 0
        assert product.price == product.price.quantize(Decimal("0.01"))


async def test_golden_values_pin_the_generator() -> None:
    """Fails when the generator changes: stored results and benchmarks would shift."""
    products = await SampleAmazonProvider().best_sellers(CATEGORY, 3, as_of=AS_OF)
    first = products[0]
    assert first.asin == "B041ZPUIGP"
    assert first.title == (
        "Auricle Bluetooth Speaker BS-371 Lite, 360° Stereo Sound, 24H Playtime, "
        "IPX7 Waterproof, Black"
    )
    assert first.upcs == ("115044605651",)
    assert first.price == Decimal("39.95")
    assert [p.asin for p in products[1:]] == ["B0F9MOB6R1", "B0WNNGJ4P9"]
    listings = await SampleEbayProvider().search(products[2], 20, as_of=AS_OF)
    assert len(listings) == 3
    assert listings[0].item_id == "v1|208435403021|0"
    assert listings[0].seller_username == "familyshop"
    assert listings[0].price == Decimal("134.39")
    assert sample_seller(0).username == "metro_express_72"


async def test_shorter_lists_are_prefixes_of_longer_ones() -> None:
    amazon = SampleAmazonProvider()
    longest = await amazon.best_sellers(CATEGORY, 100, as_of=AS_OF)
    for limit in (1, 10, 50):
        assert await amazon.best_sellers(CATEGORY, limit, as_of=AS_OF) == longest[:limit]
    assert len(await amazon.best_sellers(CATEGORY, 500, as_of=AS_OF)) == 100


async def test_categories_differ() -> None:
    amazon = SampleAmazonProvider()
    electronics = await amazon.best_sellers(CATEGORY, 10)
    kitchen = await amazon.best_sellers("284507", 10)
    assert not {p.asin for p in electronics} & {p.asin for p in kitchen}
    assert {p.brand for p in electronics}.isdisjoint({p.brand for p in kitchen})


async def test_gtins_are_valid_and_some_products_have_none() -> None:
    products = await all_products()
    upcs = [code for p in products for code in p.upcs]
    eans = [code for p in products for code in p.eans]
    assert all(len(code) == 12 and is_valid_gtin(code) for code in upcs)
    assert all(len(code) == 13 and is_valid_gtin(code) for code in eans)
    without = [p for p in products if p.gtin is None]
    assert len(upcs) > len(products) * 0.7
    assert len(eans) > len(products) * 0.05
    assert 0 < len(without) < len(products) * 0.15


# --- sample eBay ------------------------------------------------------------------------


async def test_listings_are_deterministic_distinct_and_plausible() -> None:
    products = await SampleAmazonProvider().best_sellers(CATEGORY, 50, as_of=AS_OF)
    ebay = SampleEbayProvider()
    for product in products:
        listings = await ebay.search(product, 50, as_of=AS_OF)
        assert listings == await SampleEbayProvider().search(product, 50, as_of=AS_OF)
        assert await ebay.search(product, 3, as_of=AS_OF) == listings[:3]
        sellers = [listing.seller_username for listing in listings]
        assert len(sellers) == len(set(sellers))
        assert len({listing.item_id for listing in listings}) == len(listings)
        assert product.price is not None
        for listing in listings:
            number = re.fullmatch(r"v1\|(\d{12})\|0", listing.item_id)
            assert number is not None
            assert listing.url == f"https://www.ebay.com/itm/{number[1]}"
            assert re.fullmatch(r"[a-z0-9]+([._][a-z0-9]+)*", listing.seller_username)
            assert listing.price is not None
            assert product.price * Decimal("0.6") < listing.price < product.price * Decimal("1.3")
            assert 0 < len(listing.title) <= 80
            assert product.title.split(",")[0] in listing.title
            assert listing.currency == "USD"


async def test_search_respects_limit_and_handles_a_product_without_price() -> None:
    product = Product(asin="B0NOPRICE1", title="Mystery Gadget", category_id="1", sales_rank=1)
    ebay = SampleEbayProvider()
    for limit in (0, 1, 5):
        assert len(await ebay.search(product, limit)) <= limit
    assert all(
        listing.price is not None and listing.price > 0
        for listing in await ebay.search(product, 100)
    )


async def test_sellers_are_long_tailed_and_consistent() -> None:
    ebay = SampleEbayProvider()
    products_per_seller: Counter[str] = Counter()
    listing_counts: list[int] = []
    seen: dict[str, tuple[int | None, Decimal | None]] = {}
    for product in await all_products():
        listings = await ebay.search(product, 20, as_of=AS_OF)
        listing_counts.append(len(listings))
        for listing in listings:
            products_per_seller[listing.seller_username] += 1
            profile = (listing.seller_feedback_score, listing.seller_feedback_percentage)
            assert seen.setdefault(listing.seller_username, profile) == profile
    top_ten = [count for _, count in products_per_seller.most_common(10)]
    median = statistics.median(products_per_seller.values())
    assert min(top_ten) > 10 * median
    assert 0 < listing_counts.count(0) < len(listing_counts) * 0.15
    assert max(listing_counts) == 20  # some products have many sellers
    assert statistics.median(listing_counts) <= 8  # most have a handful


def test_seller_profiles_are_realistic() -> None:
    sellers = [sample_seller(index) for index in range(2000)]
    assert len({s.username for s in sellers}) == 2000
    scores = [s.feedback_score for s in sellers]
    assert all(0 <= score <= 500_000 for score in scores)
    assert max(scores) > 100_000
    assert statistics.median(scores) < 1_000
    percentages = [s.feedback_percentage for s in sellers]
    assert all(Decimal(80) <= p <= Decimal(100) for p in percentages)
    assert sum(p >= Decimal(95) for p in percentages) > 0.9 * len(percentages)


async def test_latency_is_simulated_with_the_injected_sleep() -> None:
    time = FakeTime()
    product = (await SampleAmazonProvider(250, sleep=time.sleep).best_sellers(CATEGORY, 1))[0]
    await SampleEbayProvider(40, sleep=time.sleep).search(product, 5)
    assert time.sleeps == [0.25, 0.04]
    await SampleAmazonProvider(0, sleep=time.sleep).best_sellers(CATEGORY, 1)
    assert time.sleeps == [0.25, 0.04]


# --- rate limiter -----------------------------------------------------------------------


async def test_rate_limiter_spaces_calls_after_the_burst() -> None:
    time = FakeTime()
    limiter = RateLimiter(10, clock=time.clock, sleep=time.sleep)
    for _ in range(30):
        await limiter.acquire()
    assert time.now == pytest.approx(2.0)  # 10 at once, then 20 at 10 per second
    assert time.sleeps[:1] == [pytest.approx(0.1)]
    time.now += 60  # a long pause refills the bucket only up to the burst
    before = len(time.sleeps)
    for _ in range(11):
        await limiter.acquire()
    assert len(time.sleeps) == before + 1


async def test_rate_limiter_serves_concurrent_callers_in_turn() -> None:
    time = FakeTime()
    due: dict[int, float] = {}

    async def sleep(seconds: float) -> None:
        task = asyncio.current_task()
        assert task is not None
        due[int(task.get_name())] = time.now + seconds
        await asyncio.sleep(0)

    limiter = RateLimiter(5, burst=2, clock=time.clock, sleep=sleep)
    tasks = [asyncio.create_task(limiter.acquire(), name=str(i)) for i in range(12)]
    await asyncio.gather(*tasks)
    assert sorted(due) == list(range(2, 12))  # the first two took the burst
    assert [due[i] for i in range(2, 12)] == pytest.approx([0.2 * k for k in range(1, 11)])


async def test_a_cancelled_waiter_gives_its_token_back() -> None:
    time = FakeTime()
    waits: list[float] = []

    async def sleep_forever(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.Event().wait()

    limiter = RateLimiter(1, clock=time.clock, sleep=sleep_forever)
    await limiter.acquire()  # the burst
    for _ in range(2):
        waiter = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    assert waits == [1.0, 1.0]  # the second waiter did not queue behind the cancelled one


async def test_unlimited_rate_limiter_never_waits() -> None:
    time = FakeTime()
    limiter = RateLimiter(None, clock=time.clock, sleep=time.sleep)
    for _ in range(1000):
        await limiter.acquire()
    assert time.sleeps == []


# --- retries ----------------------------------------------------------------------------

HANG = object()
PRODUCT = Product(asin="B0ABC12345", title="Thing", category_id=CATEGORY, sales_rank=1)
LISTING = Listing(
    item_id="v1|123456789012|0",
    title="Thing",
    price=Decimal("9.99"),
    currency="USD",
    seller_username="seller_1",
    seller_feedback_score=10,
    seller_feedback_percentage=Decimal("100.0"),
    url="https://www.ebay.com/itm/123456789012",
)


def http_error(status: int, *, retry_after: float | None = None) -> ProviderError:
    return ProviderError(
        f"HTTP {status} from sample",
        provider="sample",
        retryable=status == 429 or status >= 500,
        status_code=status,
        retry_after=retry_after,
    )


class ScriptedEbay:
    """An eBay provider that plays `outcomes` in turn (the last one repeats)."""

    name = "sample"

    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.attempts = 0

    async def search(
        self, product: Product, limit: int, *, as_of: datetime | None = None
    ) -> list[Listing]:
        outcome = self.outcomes[min(self.attempts, len(self.outcomes) - 1)]
        self.attempts += 1
        if outcome is HANG:
            await asyncio.Event().wait()
        if isinstance(outcome, BaseException):
            raise outcome
        return [LISTING]


class FailingAmazon:
    """An Amazon provider whose every call fails with `error`."""

    name = "keepa"

    def __init__(self, error: ProviderError) -> None:
        self.error = error
        self.attempts = 0

    async def best_sellers(
        self, category_id: str, limit: int, *, as_of: datetime | None = None
    ) -> list[Product]:
        self.attempts += 1
        raise self.error


def resilient(
    inner: ScriptedEbay, time: FakeTime, *, timeout: float = 1.0
) -> ResilientEbayProvider:
    return ResilientEbayProvider(
        inner,
        limiter=RateLimiter(None),
        policy=RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=30.0, rng=random.Random(7)),
        timeout=timeout,
        sleep=time.sleep,
    )


def test_backoff_has_full_jitter_and_honours_retry_after() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay=0.5, max_delay=8.0, rng=random.Random(1))
    for attempt in range(1, 10):
        ceiling = min(8.0, 0.5 * 2 ** (attempt - 1))
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0 <= delay <= ceiling for delay in delays)
        assert max(delays) > ceiling * 0.9
    assert policy.delay(1, http_error(429, retry_after=5)) >= 5
    assert policy.delay(1, http_error(429, retry_after=120)) == 120  # beyond max_delay: asked
    assert policy.delay(1, http_error(429, retry_after=10_000)) == MAX_RETRY_AFTER
    assert policy.delay(1000) <= 8.0


async def test_transient_failures_are_retried_until_success(
    caplog: pytest.LogCaptureFixture,
) -> None:
    time = FakeTime()
    inner = ScriptedEbay(http_error(429, retry_after=3), http_error(503), http_error(503), "ok")
    provider = resilient(inner, time)
    with caplog.at_level(logging.WARNING, logger="app.providers.resilience"):
        assert await provider.search(PRODUCT, 10) == [LISTING]
    assert inner.attempts == 4
    assert (provider.calls, provider.retries, provider.failures) == (1, 3, 0)
    assert time.sleeps[0] >= 3  # the provider's retry_after
    assert time.sleeps[1] <= 2  # backoff ceilings: 1 s, 2 s, 4 s, ...
    assert time.sleeps[2] <= 4
    retries = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(retries) == 3
    assert (
        "eBay search for ASIN B0ABC12345 (sample): attempt 1 of 5 failed" in retries[0].getMessage()
    )
    assert "HTTP 429 from sample" in retries[0].getMessage()
    assert retries[1].__dict__["provider"] == "sample"
    assert retries[1].__dict__["attempt"] == 2


async def test_spent_retry_budget_raises_a_clear_error() -> None:
    time = FakeTime()
    inner = ScriptedEbay(http_error(503))
    provider = resilient(inner, time)
    with pytest.raises(ProviderFailedError) as caught:
        await provider.search(PRODUCT, 10)
    assert str(caught.value) == (
        "eBay search for ASIN B0ABC12345 failed after 5 attempts: HTTP 503 from sample"
    )
    assert caught.value.provider == "sample"
    assert caught.value.attempts == 5
    assert isinstance(caught.value.__cause__, ProviderError)
    assert caught.value.__cause__.status_code == 503
    assert inner.attempts == 5
    assert len(time.sleeps) == 4  # no pointless wait after the last attempt
    assert (provider.calls, provider.retries, provider.failures) == (1, 4, 1)


async def test_permanent_failure_is_not_retried() -> None:
    time = FakeTime()
    error = ProviderError("invalid API key", provider="keepa", retryable=False, status_code=400)
    inner = FailingAmazon(error)
    provider = ResilientAmazonProvider(
        inner, limiter=RateLimiter(None), policy=RetryPolicy(), timeout=1.0, sleep=time.sleep
    )
    assert provider.name == "keepa"
    with pytest.raises(ProviderFailedError) as caught:
        await provider.best_sellers(CATEGORY, 50)
    assert str(caught.value) == (
        "Amazon best sellers of category 172282 failed: invalid API key (HTTP 400)"
    )
    assert caught.value.__cause__ is error
    assert caught.value.attempts == 1
    assert inner.attempts == 1
    assert time.sleeps == []


async def test_quota_exhaustion_passes_through_unretried() -> None:
    time = FakeTime()
    resume_at = datetime(2027, 1, 1, 8, 0, tzinfo=UTC)
    error = QuotaExhaustedError("daily budget spent", provider="sample", resume_at=resume_at)
    inner = ScriptedEbay(error)
    provider = resilient(inner, time)
    with pytest.raises(QuotaExhaustedError) as caught:
        await provider.search(PRODUCT, 10)
    assert caught.value is error  # the run waits until resume_at; no retry, no failure
    assert inner.attempts == 1
    assert time.sleeps == []
    assert (provider.calls, provider.retries, provider.failures) == (1, 0, 0)


async def test_a_hanging_call_times_out_and_is_retried() -> None:
    time = FakeTime()
    inner = ScriptedEbay(HANG, "ok")
    provider = resilient(inner, time, timeout=0.005)
    assert await provider.search(PRODUCT, 10) == [LISTING]
    assert inner.attempts == 2
    assert provider.retries == 1


async def test_a_call_that_always_hangs_fails_with_the_timeout_as_reason() -> None:
    time = FakeTime()
    provider = ResilientEbayProvider(
        ScriptedEbay(HANG),
        limiter=RateLimiter(None),
        policy=RetryPolicy(max_attempts=2),
        timeout=0.002,
        sleep=time.sleep,
    )
    with pytest.raises(ProviderFailedError, match=r"after 2 attempts: no answer within 0\.002s"):
        await provider.search(PRODUCT, 10)


async def test_network_errors_are_retried() -> None:
    time = FakeTime()
    request = httpx.Request("GET", "https://api.ebay.com/buy/browse/v1/item_summary/search")
    inner = ScriptedEbay(
        httpx.ConnectError("connection refused", request=request),
        httpx.ReadTimeout("read timed out", request=request),
        "ok",
    )
    provider = resilient(inner, time)
    assert await provider.search(PRODUCT, 10) == [LISTING]
    assert inner.attempts == 3
    assert provider.retries == 2


async def test_each_attempt_waits_for_the_rate_limiter() -> None:
    time = FakeTime()
    provider = ResilientEbayProvider(
        ScriptedEbay(http_error(503), "ok"),
        limiter=RateLimiter(1, clock=time.clock, sleep=time.sleep),
        policy=RetryPolicy(base_delay=0.0),
        timeout=1.0,
        sleep=time.sleep,
    )
    await provider.search(PRODUCT, 10)
    assert time.now == pytest.approx(1.0)  # the retry waited for the second token


async def test_other_exceptions_propagate_unchanged() -> None:
    provider = resilient(ScriptedEbay(ValueError("bug")), FakeTime())
    with pytest.raises(ValueError, match="bug"):
        await provider.search(PRODUCT, 10)
    assert provider.retries == 0


# --- wiring -----------------------------------------------------------------------------


async def test_build_providers_wraps_the_sample_providers() -> None:
    settings = make_settings(sample_provider_latency_ms=0, ebay_requests_per_second=3)
    amazon, ebay = build_providers(settings)
    assert isinstance(amazon, ResilientAmazonProvider)
    assert isinstance(ebay, ResilientEbayProvider)
    assert isinstance(amazon.inner, SampleAmazonProvider)
    assert isinstance(ebay.inner, SampleEbayProvider)
    assert (amazon.name, ebay.name) == ("sample", "sample")
    assert amazon.limiter.rate is None
    assert ebay.limiter.rate == 3
    assert amazon.limiter is not ebay.limiter
    assert amazon.policy.max_attempts == settings.provider_max_attempts
    assert amazon.timeout == settings.provider_timeout_seconds
    products = await amazon.best_sellers(CATEGORY, 5, as_of=AS_OF)
    assert products == await SampleAmazonProvider().best_sellers(CATEGORY, 5, as_of=AS_OF)
