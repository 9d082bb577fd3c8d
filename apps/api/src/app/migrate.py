"""Schema migrations: upgrade to head on start, and tell whether the schema is current."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from app.config import Settings

logger = logging.getLogger(__name__)


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
