"""The one notion of "now": timezone-aware UTC, injectable wherever time matters."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]
"""What every time-dependent part takes, so tests can move time instead of waiting."""


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)
