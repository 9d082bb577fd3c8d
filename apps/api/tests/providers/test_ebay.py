"""The eBay Browse client against a fake eBay on loopback: searching by GTIN or by title
(paging, duplicates, the title fallback) and the OAuth token."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from app.providers.base import (
    Listing,
    ProviderError,
    QuotaExhaustedError,
)
from app.providers.ebay import daily_budget
from app.providers.resilience import (
    ProviderFailedError,
    RateLimiter,
    ResilientEbayProvider,
    RetryPolicy,
)
from tests.helpers.ebay import UPC, Clock, client_for, product
from tests.helpers.fake_marketplaces import (
    FakeEbay,
    ebay_errors,
    ebay_item,
    resilient_ebay,
)

# --- search ---------------------------------------------------------------------------------


async def test_a_product_with_a_upc_is_searched_by_gtin(
    ebay: FakeEbay, http: httpx.AsyncClient
) -> None:
    ebay.list_by_gtin(
        UPC,
        [
            ebay_item("VOLTKO earbuds", "gadget_outlet", price="24.50", feedback_percentage="99.5"),
            ebay_item("Earbuds WE-512X", "mike.smith12", feedback_score=12),
        ],
    )
    listings = await client_for(ebay, http, marketplace_id="EBAY_DE").search(product(), 20)

    first, second = listings
    assert first.title == "VOLTKO earbuds"  # found by GTIN: no title check
    assert first.item_id.startswith("v1|")
    assert first.price == Decimal("24.50")
    assert first.currency == "USD"
    assert first.seller_username == "gadget_outlet"
    assert first.seller_feedback_score == 1500
    assert first.seller_feedback_percentage == Decimal("99.5")
    assert first.url.startswith("https://www.ebay.com/itm/")
    assert second.seller_feedback_score == 12

    (token_request,) = ebay.calls(FakeEbay.TOKEN_PATH)
    assert token_request.form == {
        "grant_type": "client_credentials",
        "scope": "https://api.ebay.com/oauth/api_scope",
    }
    assert token_request.headers["authorization"].startswith("Basic ")
    (search,) = ebay.calls(FakeEbay.SEARCH_PATH)
    assert search.params == {"gtin": UPC, "limit": "20"}
    assert search.headers["x-ebay-c-marketplace-id"] == "EBAY_DE"
    assert search.headers["authorization"].startswith("Bearer v^1.1#")


async def test_without_a_upc_the_title_is_searched_and_only_matches_are_kept(
    ebay: FakeEbay, http: httpx.AsyncClient
) -> None:
    ebay.list_for_keywords(
        [
            ebay_item("NEW VOLTKO Wireless Earbuds WE-512X Black", "kept_exact"),
            ebay_item("Voltko WE512X earbuds wireless - Free Shipping", "kept_spelling"),
            ebay_item("VOLTKO Wireless Earbuds WE-733", "dropped_other_model"),
            ebay_item("Wireless Earbuds Bluetooth Headphones", "dropped_generic"),
        ]
    )
    # no code at all, or only malformed ones (a wrong check digit, too short, not digits)
    for codes in [{}, {"upcs": ("012345678906",), "eans": ("40063813", "ABCDEFGHIJKL")}]:
        before = len(ebay.calls(FakeEbay.SEARCH_PATH))
        listings = await client_for(ebay, http).search(product(**{"upcs": (), **codes}), 20)
        assert [listing.seller_username for listing in listings] == ["kept_exact", "kept_spelling"]
        (search,) = ebay.calls(FakeEbay.SEARCH_PATH)[before:]
        assert search.params == {"q": "VOLTKO Wireless Earbuds WE-512X", "limit": "20"}


async def test_a_product_with_only_an_ean_is_searched_by_it(
    ebay: FakeEbay, http: httpx.AsyncClient
) -> None:
    ebay.list_by_gtin("4006381333931", [ebay_item("Earbuds", "alpha")])
    eans_only = product(upcs=(), eans=("4006381333931",))
    listings = await client_for(ebay, http).search(eans_only, 20)
    assert [listing.seller_username for listing in listings] == ["alpha"]
    (search,) = ebay.calls(FakeEbay.SEARCH_PATH)
    assert search.params == {"gtin": "4006381333931", "limit": "20"}


async def test_a_gtin_ebay_refuses_is_searched_by_title_instead(
    ebay: FakeEbay, http: httpx.AsyncClient
) -> None:
    ebay.script(FakeEbay.SEARCH_PATH, ebay_errors(400, 12001, "The value of gtin is invalid."))
    ebay.list_for_keywords([ebay_item("NEW VOLTKO Wireless Earbuds WE-512X Black", "by_title")])
    listings = await client_for(ebay, http).search(product(), 20)
    assert [listing.seller_username for listing in listings] == ["by_title"]
    by_gtin, by_title = ebay.calls(FakeEbay.SEARCH_PATH)
    assert "gtin" in by_gtin.params
    assert "q" in by_title.params
    ebay.script(FakeEbay.SEARCH_PATH, ebay_errors(400, 12001, "The value of gtin is invalid."))
    with pytest.raises(ProviderError, match="HTTP 400"):  # unless the fallback is off
        await client_for(ebay, http, keyword_fallback=False).search(product(), 20)


async def test_ebays_daily_limit_is_a_wait_until_its_reset(
    ebay: FakeEbay, http: httpx.AsyncClient
) -> None:
    ebay.daily_limit = 0  # eBay answers 429 and its Analytics API reports 0 calls left
    clock = Clock()
    with pytest.raises(QuotaExhaustedError) as caught:
        await client_for(ebay, http, clock=clock).search(product(), 5)
    assert caught.value.resume_at == datetime(2027, 7, 2, 7, 0, tzinfo=UTC)  # Pacific midnight
    assert "daily call limit" in str(caught.value)
    assert caught.value.limit == "eBay's daily call limit (eBay reports 0 of 0 calls left)"

    ebay.quota_reset = clock.now + timedelta(hours=3)  # eBay's own reset time wins
    with pytest.raises(QuotaExhaustedError) as caught:
        await client_for(ebay, http, clock=clock).search(product(), 5)
    assert caught.value.resume_at == clock.now + timedelta(hours=3)


async def test_a_429_with_calls_left_today_is_a_short_throttle(
    ebay: FakeEbay, http: httpx.AsyncClient
) -> None:
    ebay.list_by_gtin(UPC, [ebay_item("Earbuds", "alpha")])
    throttled = ebay_errors(429, 2001, "Too many requests. The request limit has been reached.")
    ebay.script(FakeEbay.SEARCH_PATH, throttled, throttled)
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    provider = ResilientEbayProvider(
        client_for(ebay, http, clock=Clock()),
        limiter=RateLimiter(None),
        policy=RetryPolicy(max_attempts=4, base_delay=0.5, max_delay=30),
        timeout=5,
        sleep=sleep,
    )
    assert len(await provider.search(product(), 5)) == 1  # backed off, not parked for the day
    assert len(sleeps) == 2
    assert all(delay <= 1 for delay in sleeps)
    assert len(ebay.calls(FakeEbay.RATE_LIMIT_PATH)) == 1  # one look at eBay's count, reused


async def test_a_429_is_a_throttle_when_ebay_does_not_say_what_is_left(
    ebay: FakeEbay, http: httpx.AsyncClient
) -> None:
    ebay.script(FakeEbay.SEARCH_PATH, ebay_errors(429, 2001, "Too many requests."))
    ebay.script(FakeEbay.RATE_LIMIT_PATH, ebay_errors(500, 10001, "Internal error"))
    with pytest.raises(ProviderError) as caught:
        await client_for(ebay, http, budget=daily_budget(900)).search(product(), 5)
    assert not isinstance(caught.value, QuotaExhaustedError)
    assert caught.value.retryable
    assert caught.value.status_code == 429
    assert "this service made 1 of at most 900 today" in str(caught.value)


async def test_a_throttle_that_outlasts_the_retries_is_a_short_wait(
    ebay: FakeEbay, http: httpx.AsyncClient
) -> None:
    throttled = ebay_errors(429, 2001, "Too many requests.")
    ebay.script(FakeEbay.SEARCH_PATH, throttled, throttled, throttled)
    clock = Clock()

    async def sleep(seconds: float) -> None:
        clock.now += timedelta(seconds=seconds)

    provider = ResilientEbayProvider(
        client_for(ebay, http, clock=clock),
        limiter=RateLimiter(None),
        policy=RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=30),
        timeout=5,
        sleep=sleep,
        now=clock,
    )
    with pytest.raises(QuotaExhaustedError) as caught:
        await provider.search(product(), 5)
    first_wait = caught.value.resume_at
    assert first_wait == clock.now + timedelta(minutes=5)
    assert caught.value.limit is not None
    assert caught.value.limit.startswith("a short-term rate limit: eBay is throttling searches")
    assert "eBay reports 5000 of 5000 Browse calls left today" in caught.value.limit
    assert provider.failures == 0  # not a failure of the run

    ebay.script(FakeEbay.SEARCH_PATH, throttled, throttled, throttled)
    with pytest.raises(QuotaExhaustedError) as caught:  # a call that was in flight meanwhile
        await provider.search(product(), 5)
    assert caught.value.resume_at == first_wait  # the same throttle, the same wait

    clock.now = first_wait
    ebay.script(FakeEbay.SEARCH_PATH, throttled, throttled, throttled)
    with pytest.raises(QuotaExhaustedError) as caught:  # it outlasted the wait too
        await provider.search(product(), 5)
    assert caught.value.resume_at == clock.now + timedelta(minutes=10)

    clock.now = caught.value.resume_at
    await provider.search(product(), 5)  # over: the next throttle starts from 5 minutes again
    ebay.script(FakeEbay.SEARCH_PATH, throttled, throttled, throttled)
    with pytest.raises(QuotaExhaustedError) as caught:
        await provider.search(product(), 5)
    assert caught.value.resume_at == clock.now + timedelta(minutes=5)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("inf", 86400), ("1e400", 86400), ("nan", None), ("-5", 0), ("90", 90)],
)
async def test_odd_retry_after_values_are_bounded(
    ebay: FakeEbay, http: httpx.AsyncClient, header: str, seconds: int | None
) -> None:
    ebay.script(
        FakeEbay.SEARCH_PATH,
        ebay_errors(503, 10001, "Service unavailable", **{"Retry-After": header}),
    )
    clock = Clock()
    with pytest.raises(ProviderError) as caught:
        await client_for(ebay, http, clock=clock).search(product(), 5)
    if seconds is not None and seconds > 60:  # a long wait is a quota wait
        assert isinstance(caught.value, QuotaExhaustedError)
        assert caught.value.resume_at == clock.now + timedelta(seconds=seconds)
    else:
        assert caught.value.retryable
        assert caught.value.retry_after == seconds


async def test_pages_are_followed_through_next_up_to_the_limit(
    ebay: FakeEbay, http: httpx.AsyncClient
) -> None:
    ebay.page_cap = 3
    ebay.list_by_gtin(UPC, [ebay_item(f"Item {n}", f"seller_{n}") for n in range(10)])
    provider = client_for(ebay, http)
    listings = await provider.search(product(), 7)
    assert [listing.seller_username for listing in listings] == [f"seller_{n}" for n in range(7)]
    pages = ebay.calls(FakeEbay.SEARCH_PATH)
    assert [p.params.get("offset", "0") for p in pages] == ["0", "3", "6"]
    assert await provider.budget.used() == 3


async def test_duplicate_items_and_listings_without_a_seller_are_left_out(
    ebay: FakeEbay, http: httpx.AsyncClient
) -> None:
    item = ebay_item("Earbuds", "alpha")
    anonymous = ebay_item("Earbuds", "x")
    del anonymous["seller"]
    bare = ebay_item("Earbuds", "beta", price=None, feedback_score=None, feedback_percentage=None)
    ebay.list_by_gtin(UPC, [item, item, anonymous, bare])
    listings = await client_for(ebay, http).search(product(), 20)
    assert [listing.seller_username for listing in listings] == ["alpha", "beta"]
    assert listings[1] == Listing(
        item_id=bare["itemId"],
        title="Earbuds",
        price=None,
        currency="USD",
        seller_username="beta",
        seller_feedback_score=None,
        seller_feedback_percentage=None,
        url=bare["itemWebUrl"],
    )


async def test_nothing_found_is_an_empty_list(ebay: FakeEbay, http: httpx.AsyncClient) -> None:
    assert await client_for(ebay, http).search(product(), 20) == []
    by_gtin, by_title = ebay.calls(FakeEbay.SEARCH_PATH)
    assert "gtin" in by_gtin.params
    assert "q" in by_title.params


async def test_nothing_found_by_gtin_falls_back_to_the_title(
    ebay: FakeEbay, http: httpx.AsyncClient
) -> None:
    ebay.list_for_keywords(
        [
            ebay_item("NEW VOLTKO Wireless Earbuds WE-512X Black", "kept_exact"),
            ebay_item("Wireless Earbuds Bluetooth Headphones", "dropped_generic"),
        ]
    )
    provider = client_for(ebay, http)
    listings = await provider.search(product(), 20)
    assert [listing.seller_username for listing in listings] == ["kept_exact"]
    by_gtin, by_title = ebay.calls(FakeEbay.SEARCH_PATH)
    assert by_gtin.params == {"gtin": UPC, "limit": "20"}
    assert by_title.params == {"q": "VOLTKO Wireless Earbuds WE-512X", "limit": "20"}
    assert await provider.budget.used() == 2  # the fallback is a call like any other


async def test_listings_found_by_gtin_need_no_title_search(
    ebay: FakeEbay, http: httpx.AsyncClient
) -> None:
    anonymous = ebay_item("Earbuds", "x")
    del anonymous["seller"]
    ebay.list_by_gtin(UPC, [anonymous])  # eBay knows the GTIN, though no item names a seller
    ebay.list_for_keywords([ebay_item("NEW VOLTKO Wireless Earbuds WE-512X Black", "by_title")])
    assert await client_for(ebay, http).search(product(), 20) == []
    (search,) = ebay.calls(FakeEbay.SEARCH_PATH)
    assert search.params == {"gtin": UPC, "limit": "20"}


async def test_the_title_fallback_can_be_turned_off(
    ebay: FakeEbay, http: httpx.AsyncClient
) -> None:
    ebay.list_for_keywords([ebay_item("NEW VOLTKO Wireless Earbuds WE-512X Black", "by_title")])
    assert await client_for(ebay, http, keyword_fallback=False).search(product(), 20) == []
    (search,) = ebay.calls(FakeEbay.SEARCH_PATH)
    assert search.params == {"gtin": UPC, "limit": "20"}


# --- the OAuth token ------------------------------------------------------------------------


async def test_the_token_is_cached_and_concurrent_callers_share_one_request(
    ebay: FakeEbay, http: httpx.AsyncClient
) -> None:
    ebay.list_by_gtin(UPC, [ebay_item("Earbuds", "alpha")])
    provider = client_for(ebay, http)
    results = await asyncio.gather(*(provider.search(product(), 5) for _ in range(10)))
    assert all(len(found) == 1 for found in results)
    await provider.search(product(), 5)
    assert len(ebay.calls(FakeEbay.TOKEN_PATH)) == 1
    assert len(ebay.calls(FakeEbay.SEARCH_PATH)) == 11


async def test_the_token_is_renewed_shortly_before_it_expires(
    ebay: FakeEbay, http: httpx.AsyncClient
) -> None:
    clock = Clock()
    provider = client_for(ebay, http, clock=clock)
    first = await provider.access_token()
    assert first.expires_at == clock.now + timedelta(seconds=7200)
    clock.now += timedelta(seconds=7200 - 301)
    assert await provider.access_token() is first
    clock.now += timedelta(seconds=2)  # within five minutes of the expiry
    second = await provider.access_token()
    assert second.value != first.value
    assert len(ebay.calls(FakeEbay.TOKEN_PATH)) == 2


async def test_a_401_renews_the_token_once(ebay: FakeEbay, http: httpx.AsyncClient) -> None:
    ebay.list_by_gtin(UPC, [ebay_item("Earbuds", "alpha")])
    provider = client_for(ebay, http)
    await provider.search(product(), 5)
    ebay.revoke_tokens()  # eBay no longer accepts the cached token
    assert len(await provider.search(product(), 5)) == 1
    assert len(ebay.calls(FakeEbay.TOKEN_PATH)) == 2
    assert len(ebay.calls(FakeEbay.SEARCH_PATH)) == 3


async def test_a_second_401_is_a_clear_error(ebay: FakeEbay, http: httpx.AsyncClient) -> None:
    ebay.script(
        FakeEbay.SEARCH_PATH,
        ebay_errors(401, 1001, "Invalid access token"),
        ebay_errors(401, 1001, "Invalid access token"),
    )
    with pytest.raises(ProviderError) as caught:
        await client_for(ebay, http).search(product(), 5)
    assert not caught.value.retryable
    assert "eBay refused a freshly issued access token" in str(caught.value)
    assert "errorId 1001: Invalid access token" in str(caught.value)
    assert len(ebay.calls(FakeEbay.TOKEN_PATH)) == 2


async def test_bad_client_credentials_fail_at_once(ebay: FakeEbay, http: httpx.AsyncClient) -> None:
    provider = resilient_ebay(client_for(ebay, http, client_secret="wrong-secret"))
    with pytest.raises(ProviderFailedError) as caught:
        await provider.search(product(), 5)
    assert str(caught.value) == (
        "eBay search for ASIN B0TEST0001 failed: eBay refused the client credentials (HTTP 401 "
        "invalid_client: client authentication failed); check EBAY_CLIENT_ID and "
        "EBAY_CLIENT_SECRET"
    )
    assert caught.value.attempts == 1
    assert len(ebay.requests) == 1
