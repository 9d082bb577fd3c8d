"""Temporary PostgreSQL databases, created next to TEST_DATABASE_URL's and dropped after."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import make_url


async def _admin(url: str, statement: str) -> None:
    import asyncpg

    target = make_url(url)
    connection = await asyncpg.connect(
        host=target.host or "127.0.0.1",
        port=target.port or 5432,
        user=target.username or "postgres",
        password=target.password,
        database="postgres",
    )
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextmanager
def temp_database(base_url: str, label: str) -> Iterator[str]:
    """A new, empty PostgreSQL database next to `base_url`'s, dropped afterwards."""
    base = make_url(base_url)
    name = f"{base.database or 'collection'}_{label}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(base_url, f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
