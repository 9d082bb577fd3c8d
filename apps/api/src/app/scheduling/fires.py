"""One fire of a schedule, apart from writing it: the plan a due time gets (`FirePlan`), the
words for its outcome (how late, why the database refused its run, why a preset cannot run, the
run's name), counting the due times it coalesces, and purging old rows from the fire log."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from app.categories import invalid_category_id
from app.core.database import Database
from app.scheduling.cron import CronSchedule
from app.tables import CollectionSchedule, FireOutcome, ScheduleFire

MAX_MISSED_COUNTED = 1000

REFUSALS = (DataError, IntegrityError)
"""Errors by which the database refuses one schedule's rows (not the database being away)."""


@dataclass
class FirePlan:
    """The decision for one due schedule, before it is written."""

    schedule: CollectionSchedule
    preset_name: str | None
    category_ids: list[str] | None
    scheduled_for: datetime
    next_run_at: datetime | None
    outcome: FireOutcome
    detail: str | None = None
    fire_id: uuid.UUID = field(default_factory=uuid.uuid4)
    run_id: uuid.UUID | None = None


def count_between(cron: CronSchedule, first: datetime, last: datetime) -> int:
    """How many due times lie in [first, last) (capped)."""
    count = 0
    moment = first
    while moment < last and count < MAX_MISSED_COUNTED:
        count += 1
        moment = cron.next_after(moment)
    return count


def ago(delta: timedelta) -> str:
    """`delta` in its largest sensible unit: '45s', '12min', '3h'."""
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}min"
    return f"{seconds // 3600}h"


def refusal(exc: Exception) -> str:
    """The database's own reason, in one short line, without the driver's class names."""
    original = exc.orig if isinstance(exc, DBAPIError) else exc
    text = str(original).strip().splitlines()[0] if str(original).strip() else type(exc).__name__
    if text.startswith("<class ") and ">: " in text:
        text = text.split(">: ", 1)[1]
    return text[:200]


def unusable_preset(preset_name: str | None, category_ids: list[str]) -> str | None:
    """Why the preset's saved categories cannot make a run, or None when they can."""
    problem = invalid_category_id(category_ids)
    if problem is None:
        return None
    return (
        f"the preset {preset_name or ''!r} cannot be run: its {problem}. "
        "Edit the preset's categories; the schedule goes on with its next due time."
    )


def run_name(plan: FirePlan) -> str:
    """The name of the run a scheduled fire starts."""
    label = plan.preset_name or "Scheduled run"
    return f"{label} (scheduled {plan.scheduled_for:%Y-%m-%d %H:%M} UTC)"


async def purge_expired_fires(
    database: Database, *, now: datetime, retention: timedelta, batch_size: int
) -> int:
    """Delete fire-log rows older than `now - retention`, one small batch per transaction.

    Safe for exactly-once: a schedule's `next_run_at` has long moved past these due times,
    so their rows no longer guard anything.
    """
    cutoff = now - retention
    deleted = 0
    while True:
        batch = sa.select(ScheduleFire.id).where(ScheduleFire.fired_at < cutoff).limit(batch_size)
        async with database.transaction() as session:
            result = await session.execute(
                sa.delete(ScheduleFire).where(ScheduleFire.id.in_(batch))
            )
        count: int = result.rowcount  # type: ignore[attr-defined]  # CursorResult
        deleted += count
        if count < batch_size:
            return deleted
