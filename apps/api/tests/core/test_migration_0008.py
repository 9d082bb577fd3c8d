"""Migration 0008 on a database with data: preset names that differ only by case are
renamed (the oldest keeps its name), so the new unique index can be built; and back."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from app import migrate
from app.core.config import Settings
from app.core.database import create_engine
from tests.helpers.databases import temp_database
from tests.helpers.settings import make_settings

BEFORE, REVISION = "0005", "0008"
ACME, BETA = uuid.uuid4(), uuid.uuid4()
T0 = datetime(2026, 11, 1, tzinfo=UTC)
LONG = "x" * 100

ORGANIZATIONS = sa.table(
    "organizations",
    sa.column("id", sa.Uuid()),
    sa.column("name", sa.String()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
PRESETS = sa.table(
    "amazon_category_presets",
    sa.column("id", sa.Uuid()),
    sa.column("org_id", sa.Uuid()),
    sa.column("name", sa.String()),
    sa.column("category_ids", sa.JSON()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)


@pytest.fixture
def fresh_settings(tmp_path: Path) -> Iterator[Settings]:
    base = os.environ.get("TEST_DATABASE_URL")
    if base:
        with temp_database(base, "mig8") as url:
            yield make_settings(database_url=url, data_dir=tmp_path)
    else:
        yield make_settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/m.db", data_dir=tmp_path)


async def _insert(settings: Settings, names: list[tuple[uuid.UUID, str]]) -> None:
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                ORGANIZATIONS.insert(),
                [{"id": org, "name": "Org", "created_at": T0} for org in (ACME, BETA)],
            )
            await connection.execute(
                PRESETS.insert(),
                [
                    {
                        "id": uuid.uuid4(),
                        "org_id": org,
                        "name": name,
                        "category_ids": ["1"],
                        "created_at": T0 + timedelta(minutes=i),
                        "updated_at": T0,
                    }
                    for i, (org, name) in enumerate(names)
                ],
            )
    finally:
        await engine.dispose()


async def _read(settings: Settings, *columns: str) -> list[tuple[object, ...]]:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            result = await connection.execute(
                sa.select(PRESETS.c.org_id, *(sa.column(c) for c in columns))
                .select_from(PRESETS)
                .order_by(PRESETS.c.created_at)
            )
            return [tuple(row) for row in result]
    finally:
        await engine.dispose()


def test_names_differing_only_by_case_are_renamed_on_upgrade(fresh_settings: Settings) -> None:
    migrate.upgrade(fresh_settings, BEFORE)
    asyncio.run(
        _insert(
            fresh_settings,
            [
                (ACME, "Electronics"),  # the oldest keeps its name
                (ACME, "electronics"),
                (ACME, "ELECTRONICS"),
                (ACME, "ELECTRONICS (2)"),  # an existing name the renaming must avoid
                (ACME, "Straße"),
                (ACME, "STRASSE"),  # the same once case-folded, as Python folds it
                (ACME, LONG),
                (ACME, LONG.upper()),  # renamed within the 100 characters a name may have
                (BETA, "electronics"),  # another organization's: untouched
            ],
        )
    )

    migrate.upgrade(fresh_settings, REVISION)
    found = asyncio.run(_read(fresh_settings, "name", "name_key"))
    assert found == [
        (ACME, "Electronics", "electronics"),
        (ACME, "electronics (3)", "electronics (3)"),
        (ACME, "ELECTRONICS (4)", "electronics (4)"),
        (ACME, "ELECTRONICS (2)", "electronics (2)"),
        (ACME, "Straße", "strasse"),
        (ACME, "STRASSE (2)", "strasse (2)"),
        (ACME, LONG, LONG),
        (ACME, LONG.upper()[:96] + " (2)", LONG[:96] + " (2)"),
        (BETA, "electronics", "electronics"),
    ]

    migrate.downgrade(fresh_settings, BEFORE)  # and back: the renamed names stay distinct
    assert [row[1] for row in asyncio.run(_read(fresh_settings, "name"))] == [
        name for _, name, _ in found
    ]
