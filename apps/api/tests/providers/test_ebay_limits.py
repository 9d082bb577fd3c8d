"""The eBay Browse client against a fake eBay on loopback: throttling and Retry-After,
refusals and malformed answers as clear errors, and the daily call budget (one count for
every instance, a day that ends at midnight Pacific time)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from starlette.responses import JSONResponse, Response

from app.core.database import Database
from app.providers.base import (
    ProviderError,
    QuotaExhaustedError,
)
from app.providers.budget import SharedDailyCallBudget, next_midnight
from app.providers.ebay import daily_budget
from app.providers.resilience import (
    RateLimiter,
    ResilientEbayProvider,
    RetryPolicy,
)
from app.tables import ProviderCallCount
from tests.helpers.ebay import UPC, Clock, client_for, product
from tests.helpers.fake_marketplaces import (
    FakeEbay,
    ebay_errors,
    ebay_item,
)

# --- throttling and errors -------------------------------------------------------------------


async def test_429_and_5xx_back_off_honouring_retry_after(
    ebay: FakeEbay, http: httpx.AsyncClient
) -> None:
    ebay.list_by_gtin(UPC, [ebay_item("Earbuds", "alpha")])
    ebay.script(
        FakeEbay.SEARCH_PATH,
        ebay_errors(429, 2001, "Too many requests.", **{"Retry-After": "2"}),
        ebay_errors(500, 10001, "Internal error"),
        Response("upstream timeout", status_code=504),
    )
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    provider = ResilientEbayProvider(
        client_for(ebay, http),
        limiter=RateLimiter(None),
        policy=RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=30),
        timeout=5,
        sleep=sleep,
    )
    assert len(await provider.search(product(), 5)) == 1
    assert len(sleeps) == 3
    assert sleeps[0] >= 2  # eBay's Retry-After, not a shorter jittered backoff
    assert provider.retries == 3


async def test_a_long_retry_after_is_a_quota_wait(ebay: FakeEbay, http: httpx.AsyncClient) -> None:
    ebay.script(
        FakeEbay.SEARCH_PATH,
        ebay_errors(429, 2001, "Too many requests.", **{"Retry-After": "3600"}),
    )
    clock = Clock()
    with pytest.raises(QuotaExhaustedError) as caught:
        await client_for(ebay, http, clock=clock).search(product(), 5)
    assert caught.value.resume_at == clock.now + timedelta(hours=1)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            ebay_errors(400, 12001, "The value of gtin is invalid."),
            "eBay search rejected the request (HTTP 400: errorId 12001: The value of gtin is "
            "invalid.)",
        ),
        (ebay_errors(403, 1100, "Access denied"), "eBay denied access to the Browse API"),
        (Response("<html>", media_type="text/html"), "the search answer (HTTP 200) is not JSON"),
        (JSONResponse({"itemSummaries": {"a": 1}}), "itemSummaries is not a list"),
        (
            JSONResponse(
                {
                    "itemSummaries": [
                        {"itemId": "v1|1|0", "title": "T", "seller": {"username": "a"}, "price": 5}
                    ]
                }
            ),
            "price of v1|1|0 is not an object",
        ),
        (
            JSONResponse(
                {
                    "itemSummaries": [
                        {
                            "itemId": "v1|1|0",
                            "title": "T",
                            "seller": {"username": "a", "feedbackPercentage": "ninety"},
                        }
                    ]
                }
            ),
            "feedbackPercentage of v1|1|0 is not a decimal string: 'ninety'",
        ),
        (
            JSONResponse({"itemSummaries": [], "next": "https://elsewhere.example/search?o=1"}),
            "next points away from",
        ),
    ],
    ids=["400", "403", "not-json", "items-not-list", "price", "percentage", "foreign-next"],
)
async def test_refusals_and_malformed_answers_are_clear_errors(
    ebay: FakeEbay, http: httpx.AsyncClient, answer: Response, message: str
) -> None:
    ebay.script(FakeEbay.SEARCH_PATH, answer)
    with pytest.raises(ProviderError) as caught:  # a title search: nothing to fall back to
        await client_for(ebay, http).search(product(upcs=()), 5)
    assert message in str(caught.value)
    assert not caught.value.retryable


# --- the daily budget ------------------------------------------------------------------------


async def test_the_daily_budget_is_respected(ebay: FakeEbay, http: httpx.AsyncClient) -> None:
    clock = Clock()
    ebay.list_by_gtin(UPC, [ebay_item("Earbuds", "alpha")])
    provider = client_for(ebay, http, clock=clock, budget=daily_budget(2, clock=clock))
    await provider.search(product(), 5)
    await provider.search(product(), 5)
    with pytest.raises(QuotaExhaustedError) as caught:
        await provider.search(product(), 5)
    assert caught.value.resume_at == datetime(2027, 7, 2, 7, 0, tzinfo=UTC)  # Pacific midnight
    assert "EBAY_DAILY_CALL_LIMIT" in str(caught.value)
    assert len(ebay.calls(FakeEbay.SEARCH_PATH)) == 2  # nothing sent beyond the budget

    clock.now = caught.value.resume_at
    await provider.search(product(), 5)
    assert await provider.budget.used() == 1


async def test_the_shared_budget_is_one_count_for_every_instance(database: Database) -> None:
    clock = Clock()
    first, second = (daily_budget(3, database=database, clock=clock) for _ in range(2))
    assert isinstance(first, SharedDailyCallBudget)
    await first.take()
    await second.take()
    await first.take()
    with pytest.raises(QuotaExhaustedError) as caught:
        await second.take()
    assert caught.value.resume_at == datetime(2027, 7, 2, 7, 0, tzinfo=UTC)  # Pacific midnight
    assert "eBay daily call budget of 3 spent by all instances" in str(caught.value)
    assert (await first.used(), await second.used()) == (3, 3)

    clock.now = caught.value.resume_at  # a new day in Pacific time
    await second.take()
    assert await first.used() == 1
    async with database.read() as session:
        rows = (
            await session.execute(
                sa.select(
                    ProviderCallCount.provider, ProviderCallCount.day, ProviderCallCount.calls
                ).order_by(ProviderCallCount.day)
            )
        ).all()
    assert [tuple(row) for row in rows] == [
        ("ebay", date(2027, 7, 1), 3),
        ("ebay", date(2027, 7, 2), 1),
    ]


async def test_concurrent_instances_never_take_more_than_the_shared_limit(
    database: Database,
) -> None:
    clock = Clock()
    budgets = [daily_budget(7, database=database, clock=clock) for _ in range(4)]
    outcomes = await asyncio.gather(
        *(budgets[n % 4].take() for n in range(20)), return_exceptions=True
    )
    assert sum(outcome is None for outcome in outcomes) == 7
    assert all(isinstance(o, QuotaExhaustedError) for o in outcomes if o is not None)
    assert await budgets[0].used() == 7


@pytest.mark.parametrize(
    ("now", "reset"),
    [
        (datetime(2027, 7, 1, 12, 0, tzinfo=UTC), datetime(2027, 7, 2, 7, 0, tzinfo=UTC)),
        (datetime(2027, 7, 2, 3, 0, tzinfo=UTC), datetime(2027, 7, 2, 7, 0, tzinfo=UTC)),
        (datetime(2027, 1, 15, 12, 0, tzinfo=UTC), datetime(2027, 1, 16, 8, 0, tzinfo=UTC)),
    ],
)
def test_the_budget_day_ends_at_midnight_pacific_time(now: datetime, reset: datetime) -> None:
    assert next_midnight(now) == reset


async def test_browse_quota_comes_from_the_analytics_api(
    ebay: FakeEbay, http: httpx.AsyncClient
) -> None:
    ebay.list_by_gtin(UPC, [ebay_item("Earbuds", "alpha")])
    provider = client_for(ebay, http)
    await provider.search(product(), 5)
    quota = await provider.browse_quota()
    assert quota is not None
    assert (quota.limit, quota.remaining) == (5000, 4999)
    assert quota.resets_at is not None
    assert quota.resets_at > datetime.now(UTC)
    (request,) = ebay.calls(FakeEbay.RATE_LIMIT_PATH)
    assert request.params == {"api_context": "buy", "api_name": "browse"}
    assert await provider.budget.used() == 1  # asking costs no Browse call
