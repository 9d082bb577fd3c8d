"""Migration 0010 on a database with data: each organization's one schedule becomes its
default schedule, with no jitter or bounds, so it fires as before; and back (the older code
knows one schedule per organization, so the others go)."""

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

BEFORE, REVISION = "0009", "0010"
ACME, BETA = uuid.uuid4(), uuid.uuid4()
T0 = datetime(2026, 11, 1, tzinfo=UTC)
NEXT = datetime(2026, 12, 1, tzinfo=UTC)

ORGANIZATIONS = sa.table(
    "organizations",
    sa.column("id", sa.Uuid()),
    sa.column("name", sa.String()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
SCHEDULES = sa.table(
    "collection_schedules",
    sa.column("id", sa.Uuid()),
    sa.column("org_id", sa.Uuid()),
    sa.column("cron_expression", sa.String()),
    sa.column("timezone", sa.String()),
    sa.column("enabled", sa.Boolean()),
    sa.column("notify_email", sa.Boolean()),
    sa.column("next_run_at", sa.DateTime(timezone=True)),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
    sa.column("name", sa.String()),
    sa.column("is_default", sa.Boolean()),
    sa.column("jitter_seconds", sa.Integer()),
    sa.column("remaining_runs", sa.Integer()),
)


@pytest.fixture
def fresh_settings(tmp_path: Path) -> Iterator[Settings]:
    base = os.environ.get("TEST_DATABASE_URL")
    if base:
        with temp_database(base, "mig10") as url:
            yield make_settings(database_url=url, data_dir=tmp_path)
    else:
        yield make_settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/m.db", data_dir=tmp_path)


def _schedule(org_id: uuid.UUID, **extra: object) -> dict[str, object]:
    return {
        "id": uuid.uuid4(),
        "org_id": org_id,
        "cron_expression": "0 0 1 * *",
        "timezone": "UTC",
        "enabled": True,
        "notify_email": False,
        "next_run_at": NEXT,
        "created_at": T0,
        "updated_at": T0,
        **extra,
    }


async def _execute(settings: Settings, statement: sa.Executable, rows: object = None) -> None:
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            await connection.execute(statement, rows)  # type: ignore[arg-type]
    finally:
        await engine.dispose()


async def _read(settings: Settings, *columns: str) -> list[tuple[object, ...]]:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            result = await connection.execute(sa.select(*(SCHEDULES.c[c] for c in columns)))
            return [tuple(_aware(value) for value in row) for row in result]
    finally:
        await engine.dispose()


def _aware(value: object) -> object:
    """SQLite gives timestamps back naive (they are stored in UTC)."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def test_each_schedule_becomes_its_organization_s_default_and_back(
    fresh_settings: Settings,
) -> None:
    migrate.upgrade(fresh_settings, BEFORE)
    orgs = [{"id": org, "name": "Org", "created_at": T0} for org in (ACME, BETA)]
    asyncio.run(_execute(fresh_settings, ORGANIZATIONS.insert(), orgs))
    asyncio.run(_execute(fresh_settings, SCHEDULES.insert(), [_schedule(ACME), _schedule(BETA)]))

    migrate.upgrade(fresh_settings, REVISION)
    columns = ("org_id", "name", "is_default", "jitter_seconds", "remaining_runs", "next_run_at")
    found = asyncio.run(_read(fresh_settings, *columns))
    assert sorted(found, key=str) == sorted(
        [(org, "Default", True, 0, None, NEXT) for org in (ACME, BETA)], key=str
    )
    # several schedules per organization now, one default at most
    asyncio.run(
        _execute(
            fresh_settings,
            SCHEDULES.insert().values(name="Second"),
            [_schedule(ACME)],
        )
    )
    with pytest.raises(IntegrityError):
        asyncio.run(
            _execute(
                fresh_settings,
                SCHEDULES.insert().values(name="Third", is_default=True),
                [_schedule(ACME)],
            )
        )

    migrate.downgrade(fresh_settings, BEFORE)  # the older code knows one per organization
    left = asyncio.run(_read(fresh_settings, "org_id", "next_run_at"))
    assert sorted(left, key=str) == sorted([(ACME, NEXT), (BETA, NEXT)], key=str)
