"""Migration 0012 on a database with data: a backfill fire may sit next to the schedule's own
fire of a due time (but only one backfill per due time), and a schedule may have many queued
backfill runs (but still one queued run of its own); and back (the older code knows no
backfill, so its fires go and its queued runs are cancelled)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app import migrate
from app.core.config import Settings
from app.core.database import create_engine
from tests.helpers.databases import temp_database
from tests.helpers.settings import make_settings

BEFORE, REVISION = "0011", "0012"
ORG, SCHEDULE = uuid.uuid4(), uuid.uuid4()
T0 = datetime(2026, 11, 1, tzinfo=UTC)
DUE = datetime(2026, 11, 2, tzinfo=UTC)
TIMESTAMP = sa.DateTime(timezone=True)

ORGANIZATIONS = sa.table(
    "organizations", sa.column("id", sa.Uuid()), sa.column("name"), sa.column("created_at")
)
SCHEDULES = sa.table(
    "collection_schedules",
    *(sa.column(name) for name in ("name", "created_at", "updated_at")),
    sa.column("id", sa.Uuid()),
    sa.column("org_id", sa.Uuid()),
)


def _fires(*extra: sa.ColumnClause[object]) -> sa.TableClause:
    return sa.table(
        "collection_schedule_fires",
        sa.column("id", sa.Uuid()),
        sa.column("schedule_id", sa.Uuid()),
        sa.column("org_id", sa.Uuid()),
        sa.column("scheduled_for", TIMESTAMP),
        sa.column("fired_at", TIMESTAMP),
        sa.column("outcome", sa.String()),
        sa.column("instance_id", sa.String()),
        sa.column("manual", sa.Boolean()),
        *extra,
    )


FIRES, FIRES_0012 = _fires(), _fires(sa.column("backfill", sa.Boolean()))
RUNS = sa.table(
    "collection_runs",
    sa.column("id", sa.Uuid()),
    sa.column("org_id", sa.Uuid()),
    sa.column("schedule_id", sa.Uuid()),
    sa.column("name", sa.String()),
    sa.column("status", sa.String()),
    sa.column("trigger", sa.String()),
    sa.column("category_ids", sa.JSON()),
    sa.column("created_at", TIMESTAMP),
    sa.column("updated_at", TIMESTAMP),
)


@pytest.fixture
def fresh_settings(tmp_path: Path) -> Iterator[Settings]:
    base = os.environ.get("TEST_DATABASE_URL")
    if base:
        with temp_database(base, "mig12") as url:
            yield make_settings(database_url=url, data_dir=tmp_path)
    else:
        yield make_settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/m.db", data_dir=tmp_path)


def _execute(settings: Settings, statement: sa.Executable, rows: object = None) -> None:
    async def run() -> None:
        engine = create_engine(settings)
        try:
            async with engine.begin() as connection:
                await connection.execute(statement, rows)  # type: ignore[arg-type]
        finally:
            await engine.dispose()

    asyncio.run(run())


def _rows(settings: Settings, statement: sa.Select[tuple[object, ...]]) -> list[tuple[object, ...]]:
    async def run() -> list[tuple[object, ...]]:
        engine = create_engine(settings)
        try:
            async with engine.connect() as connection:
                return [tuple(row) for row in await connection.execute(statement)]
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _fire(**extra: object) -> dict[str, object]:
    return {
        "id": uuid.uuid4(),
        "schedule_id": SCHEDULE,
        "org_id": ORG,
        "scheduled_for": DUE,
        "fired_at": T0,
        "outcome": "queued",
        "instance_id": "test",
        "manual": False,
        **extra,
    }


def _run(trigger: str, status: str = "queued") -> dict[str, object]:
    return {
        "id": uuid.uuid4(),
        "org_id": ORG,
        "schedule_id": SCHEDULE,
        "name": f"a {trigger} run",
        "status": status,
        "trigger": trigger,
        "category_ids": ["172282"],
        "created_at": T0,
        "updated_at": T0,
    }


def test_backfills_sit_next_to_the_schedule_s_own_fires_and_runs_and_go_on_downgrade(
    fresh_settings: Settings,
) -> None:
    migrate.upgrade(fresh_settings, BEFORE)
    _execute(fresh_settings, ORGANIZATIONS.insert(), [{"id": ORG, "name": "Org", "created_at": T0}])
    _execute(
        fresh_settings,
        SCHEDULES.insert(),
        [{"id": SCHEDULE, "org_id": ORG, "name": "Hourly", "created_at": T0, "updated_at": T0}],
    )
    own_fire, own_run = _fire(outcome="skipped"), _run("schedule")
    _execute(fresh_settings, FIRES.insert(), [own_fire])
    _execute(fresh_settings, RUNS.insert(), [own_run])

    migrate.upgrade(fresh_settings, REVISION)
    assert _rows(fresh_settings, sa.select(FIRES_0012.c.backfill)) == [(False,)]
    backfilled = _fire(backfill=True)
    _execute(fresh_settings, FIRES_0012.insert(), [backfilled])  # next to the own fire
    with pytest.raises(IntegrityError):  # but once per due time
        _execute(fresh_settings, FIRES_0012.insert(), [_fire(backfill=True)])
    backfill_runs = [_run("backfill"), _run("backfill"), _run("backfill", "completed")]
    _execute(fresh_settings, RUNS.insert(), backfill_runs)  # many queued of one schedule
    with pytest.raises(IntegrityError):  # but one queued run of its own
        _execute(fresh_settings, RUNS.insert(), [_run("schedule")])

    migrate.downgrade(fresh_settings, BEFORE)
    assert _rows(fresh_settings, sa.select(FIRES.c.id)) == [(own_fire["id"],)]
    runs = {
        run_id: f"{status}/{trigger}"
        for run_id, status, trigger in _rows(
            fresh_settings, sa.select(RUNS.c.id, RUNS.c.status, RUNS.c.trigger)
        )
    }
    assert runs == {
        own_run["id"]: "queued/schedule",
        backfill_runs[0]["id"]: "cancelled/schedule",
        backfill_runs[1]["id"]: "cancelled/schedule",
        backfill_runs[2]["id"]: "completed/schedule",
    }
    migrate.upgrade(fresh_settings)  # and up again, with that data
