"""Start-up and schema migrations: wait for the database, upgrade to head, and tell whether
the schema is current."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from app.core.config import Settings
from app.core.database import create_engine

logger = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 8.0
PROBE_SECONDS = 10.0
"""The longest one connection attempt may take (a host that drops packets never refuses)."""
# PostgreSQL refusing a connection for now: starting up / shutting down, too many clients.
TRANSIENT_SQLSTATES = {"57P03", "53300"}


class DatabaseUnavailableError(Exception):
    """The database did not accept a connection in time, or refused this service for good."""


def wait_for_database(
    settings: Settings,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Return once the configured PostgreSQL database accepts a connection.

    While it refuses or cannot be reached, retry with back-off for at most
    DATABASE_CONNECT_TIMEOUT_SECONDS, logging one line per attempt; then raise
    DatabaseUnavailableError with one line saying why. A refusal that waiting cannot cure
    (wrong password, no such database) raises at once. SQLite needs no waiting.
    """
    url = make_url(settings.effective_database_url)
    if url.get_backend_name() == "sqlite":
        return
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    budget = settings.database_connect_timeout_seconds
    deadline = clock() + budget
    delay = FIRST_RETRY_SECONDS
    while True:
        timeout = max(1.0, min(PROBE_SECONDS, deadline - clock()))
        problem = asyncio.run(_connect_once(settings, timeout))
        if problem is None:
            return
        reason, transient = problem
        if not transient:
            raise DatabaseUnavailableError(
                f"the database at {where} refused the connection ({reason}); check DATABASE_URL"
            )
        remaining = deadline - clock()
        if remaining <= 0:
            raise DatabaseUnavailableError(
                f"the database at {where} is not reachable ({reason}); gave up after "
                f"{budget:g} s (DATABASE_CONNECT_TIMEOUT_SECONDS); check DATABASE_URL and "
                "that the database is running"
            )
        wait = min(delay, remaining)
        logger.warning(
            "waiting for the database at %s (%s), retrying in %s s",
            where,
            reason,
            f"{round(wait, 1):g}",
        )
        sleep(wait)
        delay = min(2 * delay, MAX_RETRY_SECONDS)


async def _connect_once(settings: Settings, within: float) -> tuple[str, bool] | None:
    """None if the database answers; else why not, and whether waiting may help."""
    engine = create_engine(settings, poolclass=NullPool)
    try:
        async with asyncio.timeout(within), engine.connect() as connection:
            await connection.execute(sa.text("SELECT 1"))
    except TimeoutError:
        return f"no answer within {within:g} s", True
    except ConnectionRefusedError:
        return "connection refused", True
    except OSError as exc:  # unknown host, unreachable network, ...
        return (exc.strerror or str(exc) or type(exc).__name__).lower(), True
    except sa.exc.DBAPIError as exc:
        cause = exc.orig.__cause__ if exc.orig is not None else None
        sqlstate = getattr(cause, "sqlstate", None)
        message = str(cause or exc.orig or exc).splitlines()[0]
        return message, sqlstate in TRANSIENT_SQLSTATES
    finally:
        await engine.dispose()
    return None


def _alembic_dir() -> Path:
    """Where the Alembic files are: inside the wheel, or in the source tree."""
    package_dir = Path(__file__).resolve().parent
    for candidate in (package_dir, package_dir.parents[1]):
        if (candidate / "alembic.ini").is_file() and (candidate / "migrations").is_dir():
            return candidate
    raise RuntimeError(f"alembic.ini and migrations/ not found near {package_dir}")


def alembic_config(settings: Settings) -> Config:
    """An Alembic config bound to these settings' database."""
    base = _alembic_dir()
    config = Config(str(base / "alembic.ini"))
    config.set_main_option("script_location", str(base / "migrations"))
    config.attributes["settings"] = settings
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Upgrade the database to `revision`; safe to run from several processes at once."""
    logger.info("migrating database to %s", revision)
    command.upgrade(alembic_config(settings), revision)


def downgrade(settings: Settings, revision: str) -> None:
    """Downgrade the database to `revision` (`base` removes every table)."""
    command.downgrade(alembic_config(settings), revision)


def head_revision(settings: Settings) -> str | None:
    """The newest revision in the migration scripts."""
    return ScriptDirectory.from_config(alembic_config(settings)).get_current_head()
