"""Alembic environment: async, one chain for SQLite and PostgreSQL, safe to run concurrently."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from alembic import context
from sqlalchemy.pool import NullPool

from app import directory_tables  # noqa: F401  (its tables join Base.metadata)
from app.core.config import Settings
from app.core.database import create_engine
from app.providers import budget_tables  # noqa: F401  (its tables join Base.metadata)
from app.tables import Base
from app.watchlists import tables as watchlist_tables

del watchlist_tables  # imported for its tables, which it registers on Base.metadata

# Any constant works; it only has to be the same in every process of this service.
MIGRATION_LOCK_KEY = 0x436F6C6C  # "Coll"

config = context.config
target_metadata = Base.metadata


def _settings() -> Settings:
    settings = config.attributes.get("settings")
    return settings if isinstance(settings, Settings) else Settings()


def _run(connection: sa.Connection) -> None:
    is_sqlite = connection.dialect.name == "sqlite"
    if is_sqlite:
        # Batch migrations copy and drop tables; with foreign keys on, dropping a parent
        # table would cascade-delete its children. The pragma only works outside a
        # transaction, so it is set on the raw connection before Alembic begins one.
        raw = connection.connection.dbapi_connection
        assert raw is not None
        cursor = raw.cursor()
        cursor.execute("PRAGMA foreign_keys=OFF")
        cursor.close()
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=is_sqlite,
        transactional_ddl=True,
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Serialize concurrent upgrades (several replicas starting at once); the lock
            # is released when this transaction ends. SQLite serializes on BEGIN IMMEDIATE.
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
        context.run_migrations()
        if is_sqlite:
            problems = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if problems:
                raise RuntimeError(f"migration left foreign key violations: {problems[:5]}")


async def _run_online() -> None:
    engine = create_engine(_settings(), poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")

connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    asyncio.run(_run_online())
