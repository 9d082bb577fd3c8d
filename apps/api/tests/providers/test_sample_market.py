"""The drifting sample market: the same market day gives the same data, consecutive days
differ at the documented rates, SAMPLE_MARKET_DAY_SECONDS sets the day, and a run reads the
market of the day it was created, also when it is resumed or taken over on a later day."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from pydantic import ValidationError

from app.cli import main
from app.providers import build_providers, sample_market
from app.providers.base import Listing, Product
from app.providers.sample import SampleAmazonProvider, SampleEbayProvider
from app.runs.executor import RunExecutor
from app.runs.pipeline import Pipeline
from tests.helpers.actors import Actor
from tests.helpers.runs import (
    GatedEbay,
    create_run,
    created_at,
    expected_listings,
    finished,
    orphan,
    start,
    stored_listings,
    wait_for,
)
from tests.helpers.samples import forget_sample_market
from tests.helpers.scheduling import FakeClock
from tests.helpers.settings import make_settings

CATEGORIES = ["172282", "284507", "165793011", "3375251", "3760911", "1001", "1002", "1003"]
AS_OF = datetime(2027, 1, 15, 12, tzinfo=UTC)
DAYS = 30


async def market_of(moment: datetime, *, day_seconds: int = 86_400) -> list[list[Listing]]:
    """Every listing of the first 20 best sellers of CATEGORIES at `moment`, by fresh
    providers."""
    amazon = SampleAmazonProvider(market_day_seconds=day_seconds)
    ebay = SampleEbayProvider(market_day_seconds=day_seconds)
    return [
        await ebay.search(product, 50, as_of=moment)
        for category in CATEGORIES
        for product in await amazon.best_sellers(category, 20, as_of=moment)
    ]


# --- days ---------------------------------------------------------------------------------


def test_market_days_count_from_the_epoch() -> None:
    epoch = sample_market.EPOCH
    assert sample_market.market_day(epoch, 86_400) == 0
    assert sample_market.market_day(epoch - timedelta(microseconds=1), 86_400) == -1
    assert sample_market.market_day(AS_OF, 86_400) == 20_833  # 2027-01-15
    assert sample_market.market_day(AS_OF, 60) == 20_833 * 1440 + 720
    pacific = AS_OF.astimezone(timezone(timedelta(hours=-8)))  # 04:00 there, the same day
    assert sample_market.market_day(pacific, 86_400) == 20_833


async def test_the_same_day_gives_the_same_market_from_fresh_providers() -> None:
    first = await market_of(AS_OF)
    forget_sample_market()  # computed afresh, not read from a cache
    day_start = datetime(2027, 1, 15, tzinfo=UTC)
    assert await market_of(day_start) == first
    assert await market_of(day_start + timedelta(days=1, microseconds=-1)) == first
    assert await market_of(day_start + timedelta(days=1)) != first


async def test_a_shorter_market_day_moves_the_market_sooner() -> None:
    minute = datetime(2027, 1, 15, 12, 0, tzinfo=UTC)
    first = await market_of(minute, day_seconds=60)
    assert await market_of(minute + timedelta(seconds=59), day_seconds=60) == first
    assert await market_of(minute + timedelta(seconds=60), day_seconds=60) != first
    # a day of 86400 s does not change within the minute
    assert await market_of(minute + timedelta(seconds=60)) == await market_of(minute)


async def test_without_as_of_the_providers_read_their_clock() -> None:
    clock = FakeClock(AS_OF)
    amazon = SampleAmazonProvider(clock=clock)
    now = await amazon.best_sellers("172282", 100)
    assert now == await amazon.best_sellers("172282", 100, as_of=AS_OF)
    clock.now += timedelta(days=1)
    assert await amazon.best_sellers("172282", 100) != now


def test_build_providers_passes_the_market_day() -> None:
    amazon, ebay = build_providers(make_settings(sample_market_day_seconds=60))
    assert amazon.inner.market_day_seconds == 60  # type: ignore[attr-defined]
    assert ebay.inner.market_day_seconds == 60  # type: ignore[attr-defined]
    default, _ = build_providers(make_settings())
    assert default.inner.market_day_seconds == 86_400  # type: ignore[attr-defined]


def test_a_market_day_of_zero_seconds_is_refused_with_a_clear_message(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValidationError, match=r"sample_market_day_seconds\n.*greater than or"):
        make_settings(sample_market_day_seconds=0)
    monkeypatch.chdir(str(tmp_path))  # no stray .env
    result = CliRunner().invoke(
        main,
        ["token", "--email", "a@example.com"],
        env={"JWT_SECRET": "s" * 40, "SAMPLE_MARKET_DAY_SECONDS": "0"},
    )
    assert result.exit_code == 1
    assert "SAMPLE_MARKET_DAY_SECONDS: Input should be greater than or equal to 1" in result.output


# --- rates --------------------------------------------------------------------------------


def days(count: int) -> Iterator[datetime]:
    return (AS_OF + timedelta(days=day) for day in range(count))


async def test_best_seller_lists_change_at_the_documented_rates() -> None:
    amazon = SampleAmazonProvider()
    left: list[float] = []
    moved: list[float] = []
    price_moves: list[float] = []
    month_new: list[float] = []
    for category in CATEGORIES:
        lists = [await amazon.best_sellers(category, 100, as_of=day) for day in days(DAYS + 1)]
        for before, after in itertools.pairwise(lists):
            old = {p.asin: p for p in before}
            new = {p.asin: p for p in after}
            assert len(new) == 100
            left.append(len(old.keys() - new.keys()) / 100)
            kept = old.keys() & new.keys()
            moved.append(statistics.mean(abs(old[a].sales_rank - new[a].sales_rank) for a in kept))
            price_moves += [abs(float(new[a].price / old[a].price) - 1) for a in kept]  # type: ignore[operator]
            assert [p.sales_rank for p in after] == list(range(1, 101))
            assert all(p.price is not None and p.price > 0 for p in after)
        first, last = {p.asin for p in lists[0]}, {p.asin for p in lists[-1]}
        month_new.append(len(last - first) / 100)
        # the best seller's place keeps its product 60-180 days, and no one overtakes it
        assert sum(a[0].asin != b[0].asin for a, b in itertools.pairwise(lists)) <= 1
    # about 2.5 % of a list is replaced a day, rarely more than 7 products
    assert 0.015 <= statistics.mean(left) <= 0.04
    assert max(left) <= 0.10
    assert min(left) == 0  # some days nothing leaves a list
    # about 70 % of the list is new after a month
    assert 0.55 <= statistics.mean(month_new) <= 0.85
    # a product moves about a place a day
    assert 0.5 <= statistics.mean(moved) <= 2.5
    # Amazon prices drift well under 1 % a day, never more than the +/-4 % band allows
    assert statistics.median(price_moves) < 0.01
    assert max(price_moves) < 0.12


def offers(products: list[Product], listings: list[list[Listing]]) -> set[tuple[str, str]]:
    """(ASIN, seller) of every listing: who sells what."""
    return {
        (product.asin, listing.seller_username)
        for product, found in zip(products, listings, strict=True)
        for listing in found
    }


async def test_sellers_and_listing_prices_change_at_the_documented_rates() -> None:
    amazon, ebay = SampleAmazonProvider(), SampleEbayProvider()
    products: list[Product] = []
    for category in CATEGORIES:
        products += await amazon.best_sellers(category, 30, as_of=AS_OF)
    markets = [[await ebay.search(p, 200, as_of=day) for p in products] for day in days(DAYS + 1)]
    gone: list[float] = []
    came: list[float] = []
    sellers_gone: list[float] = []
    price_moves: list[float] = []
    for before, after in itertools.pairwise(markets):
        old, new = offers(products, before), offers(products, after)
        gone.append(len(old - new) / len(old))
        came.append(len(new - old) / len(old))
        old_sellers, new_sellers = {s for _, s in old}, {s for _, s in new}
        sellers_gone.append(len(old_sellers - new_sellers) / len(old_sellers))
        for old_listings, new_listings in zip(before, after, strict=True):
            prices = {x.item_id: x.price for x in old_listings}
            price_moves += [
                abs(float(x.price / prices[x.item_id]) - 1)  # type: ignore[operator]
                for x in new_listings
                if x.item_id in prices
            ]
    # 5-10 % of a product's sellers disappear a day, and as many appear
    assert 0.05 <= statistics.mean(gone) <= 0.10
    assert 0.05 <= statistics.mean(came) <= 0.10
    assert max(gone) <= 0.15
    # a busy seller lists other products: fewer sellers vanish from the whole market
    assert 0.01 <= statistics.mean(sellers_gone) < statistics.mean(gone)
    # prices move under 1 % on most days; about 3 % of listings jump 5-40 %
    jumps = sum(move >= 0.05 for move in price_moves) / len(price_moves)
    assert statistics.median(price_moves) < 0.01
    assert 0.01 <= jumps <= 0.06
    assert max(price_moves) <= 0.45


async def test_listing_prices_stay_in_their_band_around_the_amazon_price() -> None:
    amazon, ebay = SampleAmazonProvider(), SampleEbayProvider()
    products = await amazon.best_sellers("284507", 60, as_of=AS_OF)
    for day in days(DAYS):
        for product in products:
            assert product.price is not None
            for listing in await ebay.search(product, 200, as_of=day):
                assert listing.price is not None
                assert listing.currency == product.currency
                ratio = listing.price / product.price
                assert 0.6 < ratio < 1.3, (product, listing)


async def test_listings_ship_free_at_a_flat_rate_or_unknown_at_the_documented_shares() -> None:
    amazon, ebay = SampleAmazonProvider(), SampleEbayProvider()
    products: list[Product] = []
    for category in CATEGORIES:
        products += await amazon.best_sellers(category, 30, as_of=AS_OF)
    shipping: dict[str, tuple[object, object]] = {}
    for day in days(10):
        for product in products:
            for listing in await ebay.search(product, 200, as_of=day):
                cost = (listing.shipping, listing.shipping_currency)
                assert shipping.setdefault(listing.item_id, cost) == cost  # never drifts
                if "Free Shipping" in listing.title:
                    assert cost == (0, product.currency)
                elif listing.shipping is not None:
                    assert cost[1] == product.currency
                    assert str(listing.shipping) in ("0.00", *sample_market.SHIPPING_RATES)
    costs = [cost for cost, _ in shipping.values()]
    free = sum(cost == 0 for cost in costs) / len(costs)
    unknown = sum(cost is None for cost in costs) / len(costs)
    assert 0.5 <= free <= 0.65  # 55 %, and the listings titled "Free Shipping"
    assert 0.06 <= unknown <= 0.12
    assert 0.25 <= 1 - free - unknown <= 0.4


# --- runs ---------------------------------------------------------------------------------


@pytest.fixture
def gated(app: FastAPI) -> Iterator[GatedEbay]:
    pipeline: Pipeline = app.state.instance.pipeline
    original = pipeline.ebay
    provider = pipeline.ebay = GatedEbay()  # type: ignore[assignment]
    yield provider
    provider.allow(10_000)
    pipeline.ebay = original


async def test_a_run_resumed_on_a_later_market_day_keeps_its_creation_day(
    client: httpx.AsyncClient, admin: Actor, clock: FakeClock, gated: GatedEbay, app: FastAPI
) -> None:
    categories = ["172282", "541966"]
    run = await create_run(client, admin, categories, products_per_category=10)
    assert created_at(run) == clock.now
    await start(client, admin, run["id"])
    await wait_for(client, admin, run["id"], lambda r: r["phase"] == "ebay")
    gated.allow(3)
    await wait_for(client, admin, run["id"], lambda r: r["progress"]["products_searched"] >= 3)
    paused = await client.post(f"/collection/runs/{run['id']}/pause", headers=admin.headers)
    assert paused.status_code == 200, paused.text
    gated.allow(10_000)
    await wait_for(client, admin, run["id"], lambda r: r["status"] == "paused")
    executor: RunExecutor = app.state.instance.executor
    await wait_for(client, admin, run["id"], lambda _: run_not_in(executor, run["id"]))

    clock.now += timedelta(days=1, hours=1)  # the pause lasts past the end of the day
    resumed = await client.post(f"/collection/runs/{run['id']}/resume", headers=admin.headers)
    assert resumed.status_code == 200, resumed.text
    done = await wait_for(client, admin, run["id"], finished)
    assert done["status"] == "completed"

    stored = set(await stored_listings(app.state.instance.database, run["id"]))
    creation_day = await expected_listings(categories, 10, 20, as_of=created_at(run))
    assert stored == creation_day
    # the test could fail: the market of the day it resumed on is another one
    assert stored != await expected_listings(categories, 10, 20, as_of=clock.now)


async def test_a_run_taken_over_on_a_later_market_day_keeps_its_creation_day(
    client: httpx.AsyncClient, admin: Actor, clock: FakeClock, app: FastAPI
) -> None:
    categories = ["3760911", "228013"]
    run = await create_run(client, admin, categories)
    database = app.state.instance.database
    await orphan(database, run["id"], owner="dead-host:1", expired=True)
    clock.now += timedelta(days=3)
    executor: RunExecutor = app.state.instance.executor
    await executor.sweep()
    done = await wait_for(client, admin, run["id"], finished)
    assert done["status"] == "completed"
    stored = set(await stored_listings(database, run["id"]))
    assert stored == await expected_listings(categories, 5, 20, as_of=created_at(run))
    assert stored != await expected_listings(categories, 5, 20, as_of=clock.now)


def run_not_in(executor: RunExecutor, run_id: str) -> bool:
    return all(str(running) != run_id for running in executor.running)
