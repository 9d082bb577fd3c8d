"""A run's seller figures, kept per checkpoint and ranked when the run finishes, are those
of its listings: for random runs, every page in every order equals the ranking computed
from the listings themselves, before and after the run finishes, and in the CSV; and
checkpoints written in groups add up to the same figures as one at a time."""

from __future__ import annotations

import csv
import io
import random
import statistics
import uuid
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from app.core.database import Database
from app.runs import sellers
from app.tables import RunSeller
from tests.helpers.actors import Actor, Actors
from tests.helpers.listings import random_products, write_listings

CENT = Decimal("0.01")


@dataclass(frozen=True)
class Expected:
    rank: int
    username: str
    products: int
    listings: int
    min_price: Decimal | None
    max_price: Decimal | None
    median_price: Decimal | None
    feedback_score: int | None


def _expected(products: dict[str, list[dict[str, Any]]]) -> list[Expected]:
    """The ranking computed from the listings, the way the figures define it."""
    by_seller: dict[str, list[dict[str, Any]]] = {}
    for listings in products.values():
        for listing in listings:
            by_seller.setdefault(listing["seller_username"], []).append(listing)
    rows = []
    for name, listings in by_seller.items():
        prices = sorted(p for listing in listings if (p := listing["price"]) is not None)
        scores = [s for listing in listings if (s := listing["seller_feedback_score"]) is not None]
        median = statistics.median(prices) if prices else None
        rows.append(
            (
                name,
                len({listing["asin"] for listing in listings}),
                len(listings),
                min(prices, default=None),
                max(prices, default=None),
                None if median is None else Decimal(median).quantize(CENT, ROUND_HALF_UP),
                max(scores, default=None),
            )
        )
    rows.sort(key=lambda row: (-row[1], -row[2], row[0]))
    return [Expected(rank, *row) for rank, row in enumerate(rows, start=1)]


async def _pages(
    client: httpx.AsyncClient, admin: Actor, run_id: uuid.UUID, sort: str, order: str
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"sort": sort, "order": order, "limit": 7}
    while True:
        response = await client.get(
            f"/collection/runs/{run_id}/sellers", params=params, headers=admin.headers
        )
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        if page["next_cursor"] is None:
            return items
        params["cursor"] = page["next_cursor"]


def _money(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


SORTS: dict[str, Any] = {
    "seller": lambda e: e.username.lower(),
    "products": lambda e: e.products,
    "listings": lambda e: e.listings,
    "price": lambda e: e.min_price,
    "feedback": lambda e: e.feedback_score,
}


def _ordered(expected: list[Expected], sort: str, descending: bool) -> list[Expected]:
    """`expected` in the API's order: by the key, sellers without one last, ties by rank."""
    if sort == "rank":
        return list(reversed(expected)) if descending else expected
    key = SORTS[sort]
    valued = [e for e in expected if key(e) is not None]
    missing = [e for e in expected if key(e) is None]
    valued.sort(key=key, reverse=descending)  # stable either way: ties keep ranking order
    return valued + missing


@pytest.mark.parametrize("seed", range(12))
async def test_pages_in_every_order_are_the_ranking_of_the_listings(
    client: httpx.AsyncClient, actors: Actors, database: Database, seed: int
) -> None:
    admin = await actors.admin()
    created = await client.post(
        "/collection/runs", json={"category_ids": ["172282"]}, headers=admin.headers
    )
    assert created.status_code == 201, created.text
    run_id = uuid.UUID(created.json()["id"])
    products = random_products(random.Random(seed))
    await write_listings(database, run_id, products)
    expected = _expected(products)

    for finished in (False, True):
        if finished:
            async with database.transaction() as session:
                await sellers.finish(session, run_id)
        for sort in ("rank", *SORTS):
            for order in ("asc", "desc"):
                got = await _pages(client, admin, run_id, sort, order)
                want = _ordered(expected, sort, order == "desc")
                assert [(s["rank"], s["username"]) for s in got] == [
                    (e.rank, e.username) for e in want
                ], (sort, order, finished)
        got = await _pages(client, admin, run_id, "rank", "asc")
        for seller, want_row in zip(got, expected, strict=True):
            assert (
                seller["products"],
                seller["listings"],
                _money(seller["min_price"]),
                _money(seller["max_price"]),
                seller["feedback_score"],
                seller["currency"],
            ) == (
                want_row.products,
                want_row.listings,
                want_row.min_price,
                want_row.max_price,
                want_row.feedback_score,
                "USD",
            )
            assert _money(seller["median_price"]) == (want_row.median_price if finished else None)

    exported = await client.get(
        f"/collection/runs/{run_id}/export.csv", params={"kind": "sellers"}, headers=admin.headers
    )
    assert exported.status_code == 200
    lines = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(int(line["rank"]), line["seller_username"]) for line in lines] == [
        (e.rank, e.username) for e in expected
    ]
    assert [_money(line["median_price"] or None) for line in lines] == [
        e.median_price for e in expected
    ]


async def _figures(database: Database, run_id: uuid.UUID) -> list[tuple[Any, ...]]:
    async with database.read() as session:
        result = await session.execute(
            sa.select(
                RunSeller.username,
                RunSeller.products,
                RunSeller.listings,
                RunSeller.min_price,
                RunSeller.max_price,
                RunSeller.feedback_score,
                RunSeller.feedback_percentage,
                RunSeller.currency,
            )
            .where(RunSeller.run_id == run_id)
            .order_by(RunSeller.username)
        )
        return [tuple(row) for row in result]


@pytest.mark.parametrize("seed", range(6))
async def test_checkpoints_in_groups_add_up_to_the_figures_of_one_at_a_time(
    client: httpx.AsyncClient, actors: Actors, database: Database, seed: int
) -> None:
    rng = random.Random(seed)
    products = random_products(rng)
    per_transaction = rng.randint(2, 5)
    figures, found = [], []
    for org in ("One at a time", "In groups"):
        admin = await actors.admin(org)
        created = await client.post(
            "/collection/runs", json={"category_ids": ["172282"]}, headers=admin.headers
        )
        assert created.status_code == 201, created.text
        run_id = uuid.UUID(created.json()["id"])
        grouped = per_transaction if org == "In groups" else 1
        found.append(await write_listings(database, run_id, products, per_transaction=grouped))
        figures.append(await _figures(database, run_id))
    assert figures[0] == figures[1]
    assert found[0] == found[1] == len(figures[0])
