"""Migration 0014 records the completed runs made before it in the seller directory: the
same rows as the service writes when those runs complete one by one, without the runs
that failed or whose results retention deleted; and back (the tables go)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from app import migrate
from app.core.config import Settings
from app.core.database import Database, create_engine
from app.directory_tables import DIRECTORY_ALL, DirectoryScope, DirectorySeller
from app.runs import directory
from app.tables import CollectionRun
from tests.helpers.databases import temp_database
from tests.helpers.settings import make_settings

TIMESTAMP = sa.DateTime(timezone=True)
T0 = datetime(2026, 10, 1, tzinfo=UTC)
ORG, PRESET = uuid.uuid4(), uuid.uuid4()
RUNS = sa.table(
    "collection_runs",
    *(sa.column(name, sa.Uuid()) for name in ("id", "org_id", "preset_id")),
    *(sa.column(name) for name in ("name", "status", "trigger")),
    sa.column("category_ids", sa.JSON()),
    sa.column("products_per_category", sa.Integer()),
    sa.column("listings_per_product", sa.Integer()),
    *(sa.column(name, TIMESTAMP) for name in ("created_at", "updated_at", "results_purged_at")),
)
SELLERS = sa.table(
    "run_sellers",
    sa.column("run_id", sa.Uuid()),
    *(sa.column(name) for name in ("username", "products", "listings", "rank")),
)
# (preset?, categories, status, hours after T0, purged?, {seller: rank})
HISTORY: list[tuple[bool, list[str], str, int, bool, dict[str, int]]] = [
    (True, ["1"], "completed", 0, True, {}),  # its results are gone: not counted
    (True, ["1"], "completed", 1, False, {"a": 1, "b": 2}),
    (True, ["1"], "completed", 2, False, {"b": 1, "c": 2}),
    (True, ["1"], "failed", 3, False, {"a": 1}),  # not completed: not counted
    (False, ["5"], "completed", 4, False, {"a": 1}),
]


@pytest.fixture
def fresh_settings(tmp_path: Path) -> Iterator[Settings]:
    base = os.environ.get("TEST_DATABASE_URL")
    if base:
        with temp_database(base, "mig14") as url:
            yield make_settings(database_url=url, data_dir=tmp_path)
    else:
        yield make_settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/m.db", data_dir=tmp_path)


async def _seed(settings: Settings) -> list[uuid.UUID]:
    engine = create_engine(settings)
    ids = [uuid.uuid4() for _ in HISTORY]
    try:
        async with engine.begin() as connection:
            await connection.execute(
                sa.text(
                    "INSERT INTO organizations (id, name, created_at) VALUES (:id, 'O', :at)"
                ).bindparams(
                    sa.bindparam("id", type_=sa.Uuid()), sa.bindparam("at", type_=TIMESTAMP)
                ),
                {"id": ORG, "at": T0},
            )
            for run_id, (preset, categories, status, hours, purged, sellers) in zip(
                ids, HISTORY, strict=True
            ):
                at = T0 + timedelta(hours=hours)
                await connection.execute(
                    RUNS.insert().values(
                        id=run_id,
                        org_id=ORG,
                        preset_id=PRESET if preset else None,
                        name="r",
                        status=status,
                        trigger="manual",
                        category_ids=categories,
                        products_per_category=1,
                        listings_per_product=1,
                        created_at=at,
                        updated_at=at,
                        results_purged_at=at if purged else None,
                    )
                )
                for username, rank in sellers.items():
                    await connection.execute(
                        SELLERS.insert().values(
                            run_id=run_id,
                            username=username,
                            products=3 - rank,
                            listings=5,
                            rank=rank,
                        )
                    )
    finally:
        await engine.dispose()
    return ids


async def _directory(database: Database) -> list[tuple[Any, ...]]:
    async with database.read() as session:
        rows = await session.execute(
            sa.select(DirectorySeller).order_by(DirectorySeller.scope_id, DirectorySeller.username)
        )
        scopes = await session.execute(sa.select(DirectoryScope).order_by(DirectoryScope.scope_id))
        return [
            tuple(getattr(row, c.key) for c in row.__table__.c)
            for row in [*rows.scalars(), *scopes.scalars()]
        ]


async def _replayed(database: Database, run_ids: list[uuid.UUID]) -> list[tuple[Any, ...]]:
    """The directory the service writes when the same runs complete one by one."""
    async with database.transaction() as session:
        await session.execute(sa.delete(DirectorySeller))
        await session.execute(sa.delete(DirectoryScope))
        await session.execute(sa.update(CollectionRun).values(directory_recorded_at=None))
    for run_id in run_ids:
        async with database.transaction() as session:
            await directory.record_run(session, run_id, now=T0)
    return await _directory(database)


def test_existing_completed_runs_are_recorded(fresh_settings: Settings) -> None:
    migrate.upgrade(fresh_settings, "0013")
    ids = asyncio.run(_seed(fresh_settings))
    migrate.upgrade(fresh_settings, "0014")

    async def check() -> None:
        database = Database.from_settings(fresh_settings)
        try:
            async with database.read() as session:
                rows = {
                    (row.scope_id, row.username): row
                    for row in await session.scalars(sa.select(DirectorySeller))
                }
                recorded = dict(
                    (
                        await session.execute(
                            sa.select(CollectionRun.id, CollectionRun.directory_recorded_at)
                        )
                    ).all()
                )
            assert {run_id for run_id, at in recorded.items() if at is not None} == {
                ids[1],
                ids[2],
                ids[4],
            }
            a, b = rows[(DIRECTORY_ALL, "a")], rows[(DIRECTORY_ALL, "b")]
            assert (a.runs_seen, a.first_seen_at, a.last_run_id) == (
                2,
                T0 + timedelta(hours=1),
                ids[4],
            )
            assert (b.runs_seen, b.last_rank, b.prev_rank, b.prev_run_id) == (2, 1, 2, ids[1])
            assert (rows[(PRESET, "a")].runs_seen, rows[(PRESET, "a")].last_run_id) == (1, ids[1])
            assert len(rows) == 3 + 3 + 1  # a, b, c overall; a, b, c in the preset; a in the list

            migrated = await _directory(database)
            assert migrated == await _replayed(database, [ids[1], ids[2], ids[4]])
        finally:
            await database.dispose()

    asyncio.run(check())
    migrate.downgrade(fresh_settings, "0013")
    migrate.upgrade(fresh_settings)  # and up again, recording them anew
