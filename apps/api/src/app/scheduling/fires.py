"""One fire of a schedule, apart from writing it: the plan a due time gets (`FirePlan`), the
words for its outcome (how late, why the database refused its run, why a preset cannot run, the
run's name), counting the due times it coalesces, which fires a history shows (`FireFilter`),
and purging old rows from the fire log."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.categories import invalid_category_id
from app.core.database import Database
from app.runs.lifecycle import RunLifecycle, RunSpec, TransitionNotAllowedError
from app.scheduling.cron import CronSchedule
from app.tables import (
    ACTIVE_RUN_STATUSES,
    CollectionRun,
    CollectionSchedule,
    FireOutcome,
    OverlapPolicy,
    RunTrigger,
    ScheduleFire,
)

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
    replaced_run_id: uuid.UUID | None = None
    """The active run cancelled for this fire (overlap policy cancel_other)."""


@dataclass(frozen=True, slots=True)
class FireFilter:
    """Which fires a history shows: some outcomes (none given: all), due times in
    [since, until), backfills or not (None: both)."""

    outcomes: tuple[FireOutcome, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    backfill: bool | None = None

    def apply(self, statement: sa.Select[Any]) -> sa.Select[Any]:
        """`statement` (of fires) narrowed to the fires that match."""
        if self.outcomes:
            statement = statement.where(ScheduleFire.outcome.in_(self.outcomes))
        if self.since is not None:
            statement = statement.where(ScheduleFire.scheduled_for >= self.since)
        if self.until is not None:
            statement = statement.where(ScheduleFire.scheduled_for < self.until)
        if self.backfill is not None:
            statement = statement.where(ScheduleFire.backfill.is_(self.backfill))
        return statement


def run_spec(plan: FirePlan) -> RunSpec:
    """The run a fire starts (or queues)."""
    return RunSpec(
        org_id=plan.schedule.org_id,
        name=run_name(plan),
        category_ids=plan.category_ids or [],
        created_by=None,
        trigger=RunTrigger.SCHEDULE,
        schedule_id=plan.schedule.id,
        preset_id=plan.schedule.preset_id,
        start=True,
    )


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


async def apply_overlap(session: AsyncSession, runs: RunLifecycle, blocked: list[FirePlan]) -> None:
    """Fires whose organization has an active run, by their schedule's overlap policy:
    `skip` logs them skipped; `buffer_one` queues a run that starts when the active one
    ends (at most one per schedule: a second is skipped); `cancel_other` cancels the
    active run (its results stay) and queues this one, which starts once it reads
    cancelled."""
    active = await session.execute(
        sa.select(CollectionRun.org_id, CollectionRun.id, CollectionRun.status).where(
            CollectionRun.org_id.in_([plan.schedule.org_id for plan in blocked]),
            CollectionRun.status.in_(ACTIVE_RUN_STATUSES),
        )
    )
    by_org = {org_id: (run_id, status) for org_id, run_id, status in active}
    to_queue: list[FirePlan] = []
    for plan in blocked:
        run_id, status = by_org.get(plan.schedule.org_id, (None, None))
        plan.outcome, plan.run_id = FireOutcome.SKIPPED, run_id
        plan.detail = (
            f"run {run_id} was still {status.value}"
            if run_id and status
            else "another run was active"
        )
        if run_id is None or plan.schedule.overlap_policy is OverlapPolicy.SKIP:
            continue
        if plan.schedule.overlap_policy is OverlapPolicy.CANCEL_OTHER:
            try:
                cancelled = await runs.cancel_run(
                    session, org_id=plan.schedule.org_id, run_id=run_id
                )
            except TransitionNotAllowedError:  # already cancelling
                cancelled = None
            plan.replaced_run_id = run_id
            plan.detail = f"cancelled run {run_id} ({status.value if status else '?'})" + (
                f", now {cancelled.status.value}" if cancelled else ""
            )
        to_queue.append(plan)
    queued = await runs.create_runs(session, [run_spec(plan) for plan in to_queue], queued=True)
    for plan, run_id in zip(to_queue, queued, strict=True):
        if run_id is None:
            plan.detail = (
                f"{plan.detail}; a run of this schedule is queued already"
                if plan.replaced_run_id
                else f"{plan.detail}, and a run of this schedule is queued already"
            )
            continue
        plan.run_id = run_id
        if plan.replaced_run_id is not None:
            plan.outcome = FireOutcome.REPLACED
            plan.detail = f"{plan.detail}; this run starts once it reads cancelled"
        else:
            plan.outcome = FireOutcome.QUEUED
            plan.detail = f"waits for run {by_org[plan.schedule.org_id][0]} to end"


def countdown(plan: FirePlan, claimed: bool, now: datetime) -> dict[str, Any]:
    """The schedule's next fire, and its run budget after this fire: a fire that started a
    run counts one of `remaining_runs`; at 0 the schedule disables itself, saying why."""
    schedule = plan.schedule
    values: dict[str, Any] = {
        "next_run_at": plan.next_run_at,
        "enabled": schedule.enabled,
        "remaining_runs": schedule.remaining_runs,
        "paused_note": schedule.paused_note,
        "paused_at": schedule.paused_at,
    }
    started = claimed and plan.outcome is FireOutcome.STARTED and plan.run_id is not None
    if started and schedule.remaining_runs is not None:
        values["remaining_runs"] = left = max(schedule.remaining_runs - 1, 0)
        if left == 0:
            values.update(
                enabled=False,
                next_run_at=None,
                paused_note=f"Disabled after its last allowed run (remaining_runs reached 0 "
                f"with run {plan.run_id}); set remaining_runs and enable it to go on.",
                paused_at=now,
            )
    elif values["next_run_at"] is None and schedule.enabled and schedule.ends_at is not None:
        values.update(
            enabled=False,
            paused_note=f"Disabled: no due time is left before its end "
            f"({schedule.ends_at.isoformat()}); move ends_at and enable it to go on.",
            paused_at=now,
        )
    return values
