"""Estimated margins: for random runs, every listing's margin (API and CSV) is the formula
computed here from its prices, and every seller's median margin (set when the run finishes,
in SQL) is the median of those; prices in different currencies give no margin and say why;
a run keeps the fee % it was created with."""

from __future__ import annotations

import csv
import io
import math
import random
import uuid
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from app.core.database import Database
from app.runs import margins, sellers
from app.tables import RunListing
from tests.helpers.actors import Actor, Actors
from tests.helpers.listings import Products, random_market, write_listings, write_products
from tests.helpers.runs import finished_run

CENT = Decimal("0.01")


def _reference_margin(
    listing: dict[str, Any], product: dict[str, Any] | None, fee_percent: Decimal
) -> Decimal | None:
    """The margin as the definition says it, in plain Decimal arithmetic."""
    price, shipping = listing["price"], listing.get("shipping")
    if price is None or product is None or product["price"] is None:
        return None
    if listing["currency"] != product["currency"]:
        return None
    if shipping is not None and listing["shipping_currency"] != listing["currency"]:
        return None
    revenue = price + (shipping or 0)
    fees = (revenue * fee_percent / 100).quantize(CENT, ROUND_HALF_UP)
    margin: Decimal = revenue - fees - product["price"]
    return margin


def _reference_median(values: list[Decimal]) -> Decimal | None:
    """The middle value, or the mean of the middle two with a half cent rounded up."""
    if not values:
        return None
    ordered = sorted(values)
    middle = ordered[(len(ordered) - 1) // 2 : len(ordered) // 2 + 1]
    return Decimal(math.ceil(sum(middle) * 100 / len(middle))) / 100


def _money(value: Any) -> Decimal | None:
    return None if value in (None, "") else Decimal(str(value))


async def _pages(
    client: httpx.AsyncClient, actor: Actor, path: str, **params: Any
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params = {"limit": 7, **params}
    while True:
        response = await client.get(path, params=params, headers=actor.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        if page["next_cursor"] is None:
            return items
        params["cursor"] = page["next_cursor"]


async def _run_of(
    client: httpx.AsyncClient, admin: Actor, fee_percent: str | None = None
) -> dict[str, Any]:
    if fee_percent is not None:
        changed = await client.patch(
            "/orgs/current/settings",
            json={"expected_fee_percent": fee_percent},
            headers=admin.headers,
        )
        assert changed.status_code == 200, changed.text
    created = await client.post(
        "/collection/runs", json={"category_ids": ["172282"]}, headers=admin.headers
    )
    assert created.status_code == 201, created.text
    run: dict[str, Any] = created.json()
    return run


FEES = ["0", "13.25", "7.5", "100", "12.34", "99.99"]


@pytest.mark.parametrize("seed", range(12))
async def test_margins_and_median_margins_are_the_formula_over_random_listings(
    client: httpx.AsyncClient, actors: Actors, database: Database, seed: int
) -> None:
    rng = random.Random(seed)
    admin = await actors.admin()
    fee = Decimal(FEES[seed % len(FEES)])
    run = await _run_of(client, admin, str(fee))
    assert Decimal(run["fee_percent"]) == fee
    run_id = uuid.UUID(run["id"])
    listings, products = random_market(rng)
    await write_products(database, run_id, products)
    await write_listings(database, run_id, listings)
    async with database.transaction() as session:
        await sellers.finish(session, run_id)

    by_item = {
        (x["asin"], x["item_id"]): x for listings_of in listings.values() for x in listings_of
    }
    got = await _pages(client, admin, f"/collection/runs/{run_id}/listings")
    assert [(x["asin"], x["item_id"]) for x in got] == sorted(by_item)  # each once, in order
    for item in got:
        listing = by_item[item["asin"], item["item_id"]]
        product = products.get(item["asin"])
        want = _reference_margin(listing, product, fee)
        assert _money(item["estimated_margin"]) == want, (item, listing, product)
        assert item["margin_currency"] == (None if want is None else listing["currency"])
        assert (item["margin_note"] is None) == (
            want is not None and listing["shipping"] is not None
        )
        assert _money(item["shipping"]) == listing["shipping"]
        assert _money(item["amazon_price"]) == (product["price"] if product else None)
        assert item["amazon_currency"] == (product["currency"] if product else None)

    sellers_page = await _pages(client, admin, f"/collection/runs/{run_id}/sellers")
    for seller in sellers_page:
        values = [
            margin
            for (asin, _), listing in by_item.items()
            if listing["seller_username"] == seller["username"]
            and listing["currency"] == seller["currency"]
            and (margin := _reference_margin(listing, products.get(asin), fee)) is not None
        ]
        assert _money(seller["median_margin"]) == _reference_median(values), seller

    exported = await client.get(
        f"/collection/runs/{run_id}/export.csv", params={"kind": "listings"}, headers=admin.headers
    )
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == len(by_item)
    for row in rows:
        listing = by_item[row["asin"], row["item_id"]]
        want = _reference_margin(listing, products.get(row["asin"]), fee)
        assert _money(row["estimated_margin"]) == want
        assert row["margin_currency"] == ("" if want is None else listing["currency"])
        assert Decimal(row["fee_percent"]) == fee


def test_the_median_rounds_a_half_cent_up_also_below_zero() -> None:
    assert _reference_median([Decimal("-1.01"), Decimal("-1.02")]) == Decimal("-1.01")
    assert _reference_median([Decimal("1.01"), Decimal("1.02")]) == Decimal("1.02")
    assert _reference_median([Decimal("-3"), Decimal("5"), Decimal("9")]) == Decimal("5")


async def test_median_margins_in_sql_round_as_the_definition_says(
    client: httpx.AsyncClient, actors: Actors, database: Database
) -> None:
    """Two middle margins whose mean ends in half a cent, above and below zero."""
    admin = await actors.admin()
    run_id = uuid.UUID((await _run_of(client, admin, "0"))["id"])
    products = {
        asin: {
            "asin": asin,
            "category_id": "1",
            "category_position": 0,
            "sales_rank": rank,
            "title": "t",
            "brand": None,
            "price": Decimal("10.00"),
            "currency": "USD",
            "upcs": [],
            "eans": [],
        }
        for rank, asin in enumerate(["B1", "B2"], start=1)
    }

    def listing(asin: str, seller: str, price: str) -> dict[str, Any]:
        return {
            "asin": asin,
            "item_id": f"{asin}-{seller}",
            "title": "t",
            "price": Decimal(price),
            "currency": "USD",
            "seller_username": seller,
            "seller_feedback_score": None,
            "seller_feedback_percentage": None,
            "url": "https://www.ebay.com/itm/1",
            "shipping": Decimal(0),
            "shipping_currency": "USD",
        }

    market: Products = {
        "B1": [listing("B1", "up", "11.01"), listing("B1", "down", "8.99")],
        "B2": [listing("B2", "up", "11.02"), listing("B2", "down", "8.98")],
    }
    await write_products(database, run_id, products)
    await write_listings(database, run_id, market)
    async with database.transaction() as session:
        await sellers.finish(session, run_id)
    got = await _pages(client, admin, f"/collection/runs/{run_id}/sellers")
    assert {s["username"]: _money(s["median_margin"]) for s in got} == {
        "up": Decimal("1.02"),  # mean 1.015
        "down": Decimal("-1.01"),  # mean -1.015
    }


# --- the formula itself -------------------------------------------------------------------------


def test_a_listing_in_another_currency_has_no_margin_and_says_why() -> None:
    margin = margins.estimate(
        price=Decimal("20.00"),
        currency="EUR",
        shipping=Decimal("0"),
        shipping_currency="EUR",
        amazon_price=Decimal("10.00"),
        amazon_currency="USD",
        fee_percent=Decimal("13.25"),
    )
    assert (margin.value, margin.currency) == (None, None)
    assert margin.note == "eBay price in EUR, Amazon price in USD: no currency conversion is done"


def test_shipping_in_another_currency_gives_no_margin() -> None:
    margin = margins.estimate(
        price=Decimal("20.00"),
        currency="USD",
        shipping=Decimal("3.00"),
        shipping_currency="GBP",
        amazon_price=Decimal("10.00"),
        amazon_currency="USD",
        fee_percent=Decimal("13.25"),
    )
    assert margin.value is None
    assert margin.note == "shipping in GBP, price in USD: no currency conversion is done"


@pytest.mark.parametrize(
    ("price", "shipping", "amazon", "want", "fees", "note"),
    [
        # 13.25 % of 24.99 + 5.00 = 3.973675 -> 3.97; 29.99 - 3.97 - 19.99 = 6.03
        ("24.99", "5.00", "19.99", "6.03", "3.97", None),
        ("24.99", "0", "19.99", "1.69", "3.31", None),  # free: 3.311175 -> 3.31
        ("24.99", None, "19.99", "1.69", "3.31", margins.UNKNOWN_SHIPPING),
        ("10.00", "0", "19.99", "-11.32", "1.33", None),  # a loss: 1.325 -> 1.33 (half up)
        (None, "0", "19.99", None, None, margins.NO_EBAY_PRICE),
        ("10.00", "0", None, None, None, margins.NO_AMAZON_PRICE),
    ],
)
def test_the_formula_on_known_values(
    price: str | None,
    shipping: str | None,
    amazon: str | None,
    want: str | None,
    fees: str | None,
    note: str | None,
) -> None:
    margin = margins.estimate(
        price=None if price is None else Decimal(price),
        currency="USD",
        shipping=None if shipping is None else Decimal(shipping),
        shipping_currency=None if shipping is None else "USD",
        amazon_price=None if amazon is None else Decimal(amazon),
        amazon_currency="USD",
        fee_percent=Decimal("13.25"),
    )
    assert margin.value == (None if want is None else Decimal(want))
    assert margin.fees == (None if fees is None else Decimal(fees))
    assert margin.note == note
    assert margin.currency == (None if want is None else "USD")


# --- a run keeps its fee % --------------------------------------------------------------------


async def test_a_run_keeps_the_fee_percent_it_was_created_with(
    client: httpx.AsyncClient, admin: Actor, database: Database
) -> None:
    body = {"category_ids": ["172282"], "products_per_category": 5}
    first = await finished_run(client, admin, body)
    before = await _pages(client, admin, f"/collection/runs/{first}/listings", limit=200)
    sellers_before = await _pages(client, admin, f"/collection/runs/{first}/sellers", limit=200)
    assert any(x["estimated_margin"] is not None for x in before)
    assert any(s["median_margin"] is not None for s in sellers_before)

    changed = await client.patch(
        "/orgs/current/settings", json={"expected_fee_percent": "20"}, headers=admin.headers
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["expected_fee_percent"] == "20.00"

    run = (await client.get(f"/collection/runs/{first}", headers=admin.headers)).json()
    assert run["fee_percent"] == "13.25"
    assert await _pages(client, admin, f"/collection/runs/{first}/listings", limit=200) == before
    assert (
        await _pages(client, admin, f"/collection/runs/{first}/sellers", limit=200)
        == sellers_before
    )

    second = await finished_run(client, admin, body)
    assert (await client.get(f"/collection/runs/{second}", headers=admin.headers)).json()[
        "fee_percent"
    ] == "20.00"
    after = await _pages(client, admin, f"/collection/runs/{second}/listings", limit=200)
    for item in after:
        if item["estimated_margin"] is not None:
            revenue = Decimal(item["price"]) + Decimal(item["shipping"] or 0)
            assert Decimal(item["estimated_fees"]) == (revenue / 5).quantize(CENT, ROUND_HALF_UP)

    # the stored listings carry the sample market's shipping: free, priced and unknown
    async with database.read() as session:
        shipping = list(
            await session.scalars(
                sa.select(RunListing.shipping).where(RunListing.run_id == uuid.UUID(first))
            )
        )
    assert None in shipping
    assert Decimal(0) in shipping
    assert any(s and s > 0 for s in shipping)
