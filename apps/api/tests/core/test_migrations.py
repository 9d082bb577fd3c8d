"""Migrations: one chain that upgrades, matches the models, downgrades cleanly, on both
databases, and tolerates several processes migrating at once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from app import migrate
from app.core.config import Settings
from app.core.database import create_engine
from app.tables import Base, CollectionRun, Organization, RunListing, RunSeller
from tests.helpers.databases import temp_database
from tests.helpers.processes import CLI, clean_env
from tests.helpers.settings import make_settings


@pytest.fixture
def fresh_settings(tmp_path: Path) -> Iterator[Settings]:
    """Settings pointing at a brand-new empty database of the dialect under test."""
    base = os.environ.get("TEST_DATABASE_URL")
    if base:
        with temp_database(base, "mig") as url:
            yield make_settings(database_url=url, data_dir=tmp_path)
    else:
        yield make_settings(
            database_url=f"sqlite+aiosqlite:///{tmp_path}/mig.db", data_dir=tmp_path
        )


async def _inspect(settings: Settings) -> tuple[set[str], list[object], str | None]:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:

            def read(sync: sa.Connection) -> tuple[set[str], list[object], str | None]:
                tables = set(sa.inspect(sync).get_table_names())
                context = MigrationContext.configure(sync, opts={"compare_type": True})
                diff = (
                    compare_metadata(context, Base.metadata) if "alembic_version" in tables else []
                )
                return tables, list(diff), context.get_current_revision()

            return await connection.run_sync(read)
    finally:
        await engine.dispose()


def test_upgrade_matches_models_then_downgrade_removes_everything(fresh_settings: Settings) -> None:
    migrate.upgrade(fresh_settings)
    tables, diff, revision = asyncio.run(_inspect(fresh_settings))
    assert revision == migrate.head_revision(fresh_settings)
    assert {t.name for t in Base.metadata.sorted_tables} <= tables
    assert diff == [], f"models and migrations disagree: {diff}"

    migrate.downgrade(fresh_settings, "base")
    tables, _, revision = asyncio.run(_inspect(fresh_settings))
    assert revision is None
    assert tables <= {"alembic_version"}

    migrate.upgrade(fresh_settings)  # and back up again, cleanly
    _, diff, revision = asyncio.run(_inspect(fresh_settings))
    assert revision == migrate.head_revision(fresh_settings)
    assert diff == []


def test_upgrade_is_idempotent(fresh_settings: Settings) -> None:
    migrate.upgrade(fresh_settings)
    migrate.upgrade(fresh_settings)
    _, diff, revision = asyncio.run(_inspect(fresh_settings))
    assert revision == migrate.head_revision(fresh_settings)
    assert diff == []


@pytest.mark.slow
def test_concurrent_migrations_from_separate_processes(fresh_settings: Settings) -> None:
    """Replicas starting together: every `migrate` succeeds and the schema is right."""
    env = clean_env(
        DATABASE_URL=fresh_settings.effective_database_url, DATA_DIR=str(fresh_settings.data_dir)
    )
    processes = [
        subprocess.Popen([CLI, "migrate"], env=env, stderr=subprocess.PIPE) for _ in range(3)
    ]
    outcomes = [
        (p.wait(timeout=120), p.stderr.read().decode() if p.stderr else "") for p in processes
    ]
    assert [code for code, _ in outcomes] == [0, 0, 0], outcomes
    _, diff, revision = asyncio.run(_inspect(fresh_settings))
    assert revision == migrate.head_revision(fresh_settings)
    assert diff == []


def _old_table(table: sa.Table, *names: str) -> sa.TableClause:
    """`table` with the columns it had before later migrations (and no Python defaults)."""
    return sa.table(table.name, *(sa.column(name, table.c[name].type) for name in names))


NOW = datetime(2026, 12, 1, tzinfo=UTC)
COMMON_RUN_COLUMNS = ("id", "org_id", "name", "status", "trigger", "category_ids")
OLD_ORGANIZATIONS = _old_table(Organization.__table__, "id", "name", "created_at")
OLD_RUNS = _old_table(
    CollectionRun.__table__,
    *COMMON_RUN_COLUMNS,
    "products_per_category",
    "listings_per_product",
    "created_at",
    "updated_at",
)
OLD_LISTINGS = _old_table(
    RunListing.__table__,
    "run_id",
    "asin",
    "item_id",
    "title",
    "price",
    "currency",
    "seller_username",
    "seller_feedback_score",
    "seller_feedback_percentage",
    "url",
)


def test_seller_figures_of_existing_runs_are_computed_from_their_listings(
    fresh_settings: Settings,
) -> None:
    """0013 gives the runs made before it their sellers' figures, and finished runs their
    ranks and medians, as the pipeline would have."""
    script = ScriptDirectory.from_config(migrate.alembic_config(fresh_settings))
    before = script.get_revision("0013").down_revision
    assert isinstance(before, str)
    migrate.upgrade(fresh_settings, before)
    org_id, run_id = uuid.uuid4(), uuid.uuid4()
    listings = [  # (asin, item, seller, price): b has 2 products, a 1 product and 3 listings
        ("B1", "1", "a", "10.00"),
        ("B1", "2", "a", "20.00"),
        ("B1", "3", "a", "40.01"),
        ("B1", "4", "b", "5.00"),
        ("B2", "5", "b", "6.01"),
        ("B2", "6", "c", None),
    ]

    async def seed() -> None:
        engine = create_engine(fresh_settings)
        try:
            async with engine.begin() as connection:
                await connection.execute(
                    sa.insert(OLD_ORGANIZATIONS),
                    [{"id": org_id, "name": "Acme", "created_at": NOW}],
                )
                await connection.execute(
                    sa.insert(OLD_RUNS),
                    [
                        {
                            "id": run_id,
                            "org_id": org_id,
                            "name": "old run",
                            "status": "completed",
                            "trigger": "manual",
                            "category_ids": ["1"],
                            "products_per_category": 2,
                            "listings_per_product": 5,
                            "created_at": NOW,
                            "updated_at": NOW,
                        }
                    ],
                )
                await connection.execute(
                    sa.insert(OLD_LISTINGS),
                    [
                        {
                            "run_id": run_id,
                            "asin": asin,
                            "item_id": item,
                            "title": "t",
                            "price": None if price is None else Decimal(price),
                            "currency": "USD",
                            "seller_username": seller,
                            "seller_feedback_score": 7,
                            "seller_feedback_percentage": None,
                            "url": "https://www.ebay.com/itm/1",
                        }
                        for asin, item, seller, price in listings
                    ],
                )
                for seller in "abc":  # the table's columns before 0013: raw SQL
                    await connection.execute(
                        sa.text("INSERT INTO run_sellers (run_id, username) VALUES (:r, :u)"),
                        {"r": run_id.hex if "sqlite" in str(engine.url) else run_id, "u": seller},
                    )
        finally:
            await engine.dispose()

    async def figures() -> list[tuple[object, ...]]:
        engine = create_engine(fresh_settings)
        try:
            async with engine.connect() as connection:
                table = RunSeller.__table__.c
                rows = await connection.execute(
                    sa.select(
                        table.username,
                        table.products,
                        table.listings,
                        table.min_price,
                        table.max_price,
                        table.median_price,
                        table.rank,
                        table.currency,
                    ).order_by(table.username)
                )
                return [tuple(row) for row in rows]
        finally:
            await engine.dispose()

    asyncio.run(seed())
    migrate.upgrade(fresh_settings)
    money = Decimal
    assert asyncio.run(figures()) == [
        ("a", 1, 3, money("10.00"), money("40.01"), money("20.00"), 2, "USD"),
        ("b", 2, 2, money("5.00"), money("6.01"), money("5.51"), 1, "USD"),
        ("c", 1, 1, None, None, None, 3, "USD"),
    ]
