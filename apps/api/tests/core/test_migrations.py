"""Migrations: one chain that upgrades, matches the models, downgrades cleanly, on both
databases, and tolerates several processes migrating at once."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app import migrate
from app.core.config import Settings
from app.core.database import create_engine
from app.tables import Base
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
