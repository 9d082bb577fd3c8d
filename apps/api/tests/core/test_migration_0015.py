"""Migration 0015 on a database with runs: every organization and run gets the default fee %
(13.25), listings collected before have unknown shipping, and the sellers of finished runs
get their median estimated margin as a run finishing now would compute it; and back."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from app import migrate
from app.core.config import Settings
from app.core.database import create_engine
from tests.helpers.databases import temp_database
from tests.helpers.settings import make_settings

NOW = datetime(2026, 12, 1, tzinfo=UTC)
MONEY = sa.Numeric(12, 2)
ORG = uuid.uuid4()
FINISHED, RUNNING = uuid.uuid4(), uuid.uuid4()

ORGANIZATIONS = sa.table(
    "organizations", sa.column("id", sa.Uuid()), sa.column("name"), sa.column("created_at")
)
RUNS = sa.table(
    "collection_runs",
    sa.column("id", sa.Uuid()),
    sa.column("org_id", sa.Uuid()),
    *(sa.column(name) for name in ("name", "status", "trigger", "created_at", "updated_at")),
    sa.column("category_ids", sa.JSON()),
)
PRODUCTS = sa.table(
    "run_products",
    sa.column("run_id", sa.Uuid()),
    *(sa.column(name) for name in ("asin", "category_id", "category_position", "sales_rank")),
    sa.column("title"),
    sa.column("price", MONEY),
    sa.column("currency"),
    sa.column("upcs", sa.JSON()),
    sa.column("eans", sa.JSON()),
    sa.column("listings_found"),
)
LISTINGS = sa.table(
    "run_listings",
    sa.column("run_id", sa.Uuid()),
    *(sa.column(name) for name in ("asin", "item_id", "title", "currency")),
    *(sa.column(name) for name in ("seller_username", "url")),
    sa.column("price", MONEY),
    sa.column("shipping", MONEY),
    sa.column("shipping_currency"),
)
SELLERS = sa.table(
    "run_sellers",
    sa.column("run_id", sa.Uuid()),
    *(sa.column(name) for name in ("username", "products", "listings", "currency")),
    sa.column("median_margin", MONEY),
)
FEES = (
    sa.table("organizations", sa.column("expected_fee_percent", MONEY)),
    sa.table("collection_runs", sa.column("fee_percent", MONEY)),
)


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    base = os.environ.get("TEST_DATABASE_URL")
    if base:
        with temp_database(base, "m15") as url:
            yield make_settings(database_url=url, data_dir=tmp_path)
    else:
        yield make_settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/m.db", data_dir=tmp_path)


async def _execute(settings: Settings, *statements: tuple[object, object]) -> None:
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            for statement, rows in statements:
                await connection.execute(statement, rows)  # type: ignore[arg-type]
    finally:
        await engine.dispose()


async def _rows(settings: Settings, query: sa.Select[object]) -> list[tuple[object, ...]]:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            return [tuple(row) for row in await connection.execute(query)]
    finally:
        await engine.dispose()


def _seed(settings: Settings) -> None:
    # Amazon prices: B1 10.00, B2 20.00 (USD), B3 in EUR; margins at 13.25 %, no shipping:
    # 12.00 -> 12.00 - 1.59 - 10.00 = 0.41; 15.00 -> 15.00 - 1.99 - 10.00 = 3.01;
    # 25.00 -> 25.00 - 3.31 - 20.00 = 1.69; 30.00 -> 30.00 - 3.98 - 20.00 = 6.02.
    products = [("B1", "10.00", "USD"), ("B2", "20.00", "USD"), ("B3", "9.00", "EUR")]
    listings = [  # (asin, item, seller, price)
        ("B1", "1", "a", "12.00"),
        ("B2", "2", "a", "25.00"),
        ("B1", "3", "b", "15.00"),
        ("B2", "4", "b", "30.00"),
        ("B2", "5", "b", "25.00"),
        ("B3", "6", "c", "10.00"),  # another currency than its product: no margin
    ]
    statements = [
        (sa.insert(ORGANIZATIONS), [{"id": ORG, "name": "Acme", "created_at": NOW}]),
        (
            sa.insert(RUNS),
            [
                {
                    "id": run_id,
                    "org_id": ORG,
                    "name": status,
                    "status": status,
                    "trigger": "manual",
                    "created_at": NOW,
                    "updated_at": NOW,
                    "category_ids": ["1"],
                }
                for run_id, status in ((FINISHED, "completed"), (RUNNING, "running"))
            ],
        ),
    ]
    for run_id in (FINISHED, RUNNING):
        statements += [
            (
                sa.insert(PRODUCTS),
                [
                    {
                        "run_id": run_id,
                        "asin": asin,
                        "category_id": "1",
                        "category_position": 0,
                        "sales_rank": rank,
                        "title": "t",
                        "price": Decimal(price),
                        "currency": currency,
                        "upcs": [],
                        "eans": [],
                        "listings_found": 0,
                    }
                    for rank, (asin, price, currency) in enumerate(products, start=1)
                ],
            ),
            (
                sa.insert(LISTINGS),
                [
                    {
                        "run_id": run_id,
                        "asin": asin,
                        "item_id": item,
                        "title": "t",
                        "price": Decimal(price),
                        "currency": "USD",
                        "seller_username": seller,
                        "url": "https://www.ebay.com/itm/1",
                    }
                    for asin, item, seller, price in listings
                ],
            ),
            (
                sa.insert(SELLERS),
                [
                    {
                        "run_id": run_id,
                        "username": s,
                        "products": 1,
                        "listings": 1,
                        "currency": "USD",
                    }
                    for s in "abc"
                ],
            ),
        ]
    asyncio.run(_execute(settings, *statements))


def test_existing_runs_get_the_default_fee_and_finished_ones_their_median_margins(
    settings: Settings,
) -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config(settings))
    before = script.get_revision("0015").down_revision
    assert isinstance(before, str)
    migrate.upgrade(settings, before)
    _seed(settings)
    migrate.upgrade(settings, "0015")

    organizations, runs = FEES
    assert asyncio.run(_rows(settings, sa.select(organizations.c.expected_fee_percent))) == [
        (Decimal("13.25"),)
    ]
    assert asyncio.run(_rows(settings, sa.select(runs.c.fee_percent))) == [(Decimal("13.25"),)] * 2
    shipping = asyncio.run(
        _rows(settings, sa.select(LISTINGS.c.shipping, LISTINGS.c.shipping_currency))
    )
    assert set(shipping) == {(None, None)}
    medians = asyncio.run(
        _rows(
            settings,
            sa.select(SELLERS.c.run_id, SELLERS.c.username, SELLERS.c.median_margin).order_by(
                SELLERS.c.username
            ),
        )
    )
    assert {(username, margin) for run_id, username, margin in medians if run_id == FINISHED} == {
        ("a", Decimal("1.05")),  # (0.41 + 1.69) / 2
        ("b", Decimal("3.01")),  # 1.69, 3.01, 6.02
        ("c", None),  # no margin: its product is priced in EUR
    }
    # set when the running run finishes
    assert [margin for run_id, _, margin in medians if run_id == RUNNING] == [None] * 3

    migrate.downgrade(settings, before)
    columns = asyncio.run(
        _rows(settings, sa.select(sa.text("*")).select_from(sa.text("run_listings")))
    )
    assert len(columns[0]) == 10  # shipping and its currency are gone
