"""One fire of a schedule, apart from writing it: the due schedule as firing reads it
(`DueSchedule`), the plan its due time gets (`FirePlan`, made by a `Planner`), what happened
(`FireResult`), the words for its outcome (how late, why the database refused its run, why a
preset cannot run, the run's name), the changes it makes to its schedule, which fires a
history shows (`FireFilter`), and purging old rows from the fire log."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from app.categories import invalid_category_id
from app.core.database import Database
from app.runs.lifecycle import RunSpec
from app.scheduling.cron import CronError, CronSchedule, parse
from app.scheduling.settings import Timing, jitter_offset
from app.tables import (
    CategoryPreset,
    CollectionSchedule,
    FireOutcome,
    OverlapPolicy,
    RunTrigger,
    ScheduleFire,
)

MAX_MISSED_COUNTED = 1000

REFUSALS = (DataError, IntegrityError)
"""Errors by which the database refuses one schedule's rows (not the database being away)."""


ENABLED = sa.text("collection_schedules.enabled")
"""The condition of the partial index of due times, `ix_collection_schedules_due`, as its
definition writes it: SQLite uses a partial index only for a query that holds its condition
word for word, and SQLAlchemy writes the boolean column as `enabled = 1` there (a full
scan and a sort per batch, which made a burst quadratic)."""

DUE_COLUMNS: tuple[Any, ...] = (
    CollectionSchedule.id,
    CollectionSchedule.org_id,
    CollectionSchedule.preset_id,
    CollectionSchedule.cron_expression,
    CollectionSchedule.timezone,
    CollectionSchedule.next_run_at,
    CollectionSchedule.jitter_seconds,
    CollectionSchedule.starts_at,
    CollectionSchedule.ends_at,
    CollectionSchedule.remaining_runs,
    CollectionSchedule.enabled,
    CollectionSchedule.notify_email,
    CollectionSchedule.overlap_policy,
    CategoryPreset.name,
    CategoryPreset.category_ids,
)
"""What firing reads of a due schedule and its preset, in the order of `DueSchedule`."""


@dataclass(frozen=True, slots=True)
class DueSchedule:
    """A schedule as firing reads it: plain values of one row, no ORM object (a burst reads
    thousands of them)."""

    id: uuid.UUID
    org_id: uuid.UUID
    preset_id: uuid.UUID | None
    cron_expression: str
    timezone: str
    next_run_at: datetime | None
    jitter_seconds: int
    starts_at: datetime | None
    ends_at: datetime | None
    remaining_runs: int | None
    enabled: bool
    notify_email: bool
    overlap_policy: OverlapPolicy
    preset_name: str | None
    category_ids: list[str] | None

    @classmethod
    def of(
        cls,
        schedule: CollectionSchedule,
        preset_name: str | None,
        category_ids: list[str] | None,
    ) -> DueSchedule:
        """The values of a schedule loaded as an ORM object (a run by hand)."""
        return cls(
            schedule.id,
            schedule.org_id,
            schedule.preset_id,
            schedule.cron_expression,
            schedule.timezone,
            schedule.next_run_at,
            schedule.jitter_seconds,
            schedule.starts_at,
            schedule.ends_at,
            schedule.remaining_runs,
            schedule.enabled,
            schedule.notify_email,
            schedule.overlap_policy,
            preset_name,
            category_ids,
        )


@dataclass(slots=True)
class FirePlan:
    """The decision for one due schedule, before it is written."""

    schedule: DueSchedule
    scheduled_for: datetime
    next_run_at: datetime | None
    outcome: FireOutcome
    detail: str | None = None
    fire_id: uuid.UUID = field(default_factory=uuid.uuid4)
    run_id: uuid.UUID | None = None
    replaced_run_id: uuid.UUID | None = None
    """The active run cancelled for this fire (overlap policy cancel_other)."""

    @property
    def key(self) -> tuple[uuid.UUID, datetime]:
        """What the fire log's unique key holds of this fire (besides `backfill`)."""
        return self.schedule.id, self.scheduled_for


@dataclass(frozen=True, slots=True)
class FireResult:
    """What happened at one due time of one schedule."""

    fire_id: uuid.UUID
    schedule_id: uuid.UUID
    org_id: uuid.UUID
    scheduled_for: datetime
    fired_at: datetime
    outcome: FireOutcome
    run_id: uuid.UUID | None
    detail: str | None
    notify: bool
    manual: bool = False
    """From POST /schedule/trigger (the caller got the outcome as the answer)."""
    replaced_run_id: uuid.UUID | None = None
    """The active run cancelled for this fire (overlap policy cancel_other)."""
    jitter: timedelta = timedelta(0)
    """The schedule's jitter offset: the fire was due at `scheduled_for + jitter`."""
    policy: OverlapPolicy = OverlapPolicy.SKIP
    backfill: bool = False
    """From POST /collection/schedules/{id}/backfill (a past due time, queued again)."""

    @classmethod
    def of(cls, plan: FirePlan, fired_at: datetime, *, manual: bool) -> FireResult:
        """The result of a plan once written."""
        schedule = plan.schedule
        return cls(
            fire_id=plan.fire_id,
            schedule_id=schedule.id,
            org_id=schedule.org_id,
            scheduled_for=plan.scheduled_for,
            fired_at=fired_at,
            outcome=plan.outcome,
            run_id=plan.run_id,
            detail=plan.detail,
            notify=schedule.notify_email,
            manual=manual,
            replaced_run_id=plan.replaced_run_id,
            jitter=jitter_offset(schedule.id, schedule.jitter_seconds),
            policy=schedule.overlap_policy,
        )


@dataclass(frozen=True, slots=True)
class _Times:
    """The cron arithmetic of a due time: the latest due time it coalesces into, how many
    due times that passes over, and the schedule's next fire time after now."""

    latest: datetime
    missed: int
    next_run_at: datetime | None


class Planner:
    """Plans the fires of due schedules at one instant (one batch).

    The cron arithmetic depends only on a schedule's timing, not on the schedule: it is
    done once per distinct timing and due time, which a burst of schedules due at once
    mostly share; likewise the check of a preset's categories.
    """

    def __init__(self, now: datetime, *, grace: timedelta, slack: timedelta) -> None:
        self.now = now
        self.grace = grace
        self.slack = slack
        """Lateness within this is not a misfire, even without grace (see ScheduleService)."""
        self._times: dict[tuple[Any, ...], _Times | CronError] = {}
        self._problems: dict[tuple[str | None, ...], str | None] = {}

    def plans(self, schedules: Sequence[DueSchedule]) -> list[FirePlan]:
        """A plan for each due schedule."""
        return [self.plan(schedule) for schedule in schedules]

    def plan(self, schedule: DueSchedule) -> FirePlan:
        """Decide what a due schedule does now: start, skip later, count as missed..."""
        assert schedule.next_run_at is not None
        offset = jitter_offset(schedule.id, schedule.jitter_seconds)
        due = schedule.next_run_at - offset  # the cron time; the fire waits out the jitter
        times = self._times_of(schedule, offset, due)
        if isinstance(times, CronError):  # saved by an older, laxer version; never fires again
            return FirePlan(schedule, due, None, FireOutcome.FAILED, str(times))
        plan = FirePlan(schedule, times.latest, times.next_run_at, FireOutcome.STARTED)
        lateness = self.now - (times.latest + offset)
        category_ids = schedule.category_ids
        if lateness > self.grace + self.slack:
            plan.outcome = FireOutcome.MISSED
            plan.detail = (
                f"due {ago(lateness)} ago, longer than SCHEDULE_MISFIRE_GRACE_SECONDS="
                f"{int(self.grace.total_seconds())} (no scheduler was running, or it was behind)"
            )
            if times.missed:
                plan.detail += f" ({times.missed} earlier due time(s) missed as well)"
        elif not category_ids:
            plan.outcome = FireOutcome.NO_PRESET
            plan.detail = "the schedule has no preset (it was deleted?): choose one"
        elif problem := self._unusable(schedule.preset_name, category_ids):
            plan.outcome = FireOutcome.FAILED
            plan.detail = problem
        elif times.missed:
            plan.detail = (
                f"late by {ago(lateness)}; coalesced {times.missed} earlier missed due time(s)"
            )
        return plan

    def _unusable(self, preset_name: str | None, category_ids: list[str]) -> str | None:
        key = (preset_name, *category_ids)
        if key not in self._problems:
            self._problems[key] = unusable_preset(preset_name, category_ids)
        return self._problems[key]

    def _times_of(
        self, schedule: DueSchedule, offset: timedelta, due: datetime
    ) -> _Times | CronError:
        key = (
            schedule.cron_expression,
            schedule.timezone,
            offset,
            schedule.starts_at,
            schedule.ends_at,
            due,
        )
        times = self._times.get(key)
        if times is None:
            times = self._times[key] = self._compute(schedule, offset, due)
        return times

    def _compute(
        self, schedule: DueSchedule, offset: timedelta, due: datetime
    ) -> _Times | CronError:
        try:
            cron = parse(schedule.cron_expression, schedule.timezone)
        except CronError as exc:
            return exc
        timing = Timing(cron, offset, schedule.starts_at, schedule.ends_at)
        # Due times passed while nobody was firing coalesce into the latest of them (within
        # the schedule's bounds).
        latest = cron.latest_at_or_before(self.now - offset) or due
        if schedule.ends_at is not None and latest > schedule.ends_at:
            latest = cron.latest_at_or_before(schedule.ends_at) or due
        latest = max(due, latest)
        return _Times(
            latest, count_between(cron, due, latest), timing.fire_time(timing.next_due(self.now))
        )


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
        category_ids=plan.schedule.category_ids or [],
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
    label = plan.schedule.preset_name or "Scheduled run"
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


def schedule_changes(plan: FirePlan, *, claimed: bool, now: datetime) -> dict[str, Any]:
    """The columns a fire changes in its schedule: its next fire, its last outcome (unless
    the fire was claimed elsewhere, which recorded its own), and its run budget: a fire that
    started a run counts one of `remaining_runs`; at 0 the schedule disables itself, saying
    why, as it does when no due time is left before its end."""
    schedule = plan.schedule
    values: dict[str, Any] = {"next_run_at": plan.next_run_at, "updated_at": now}
    if claimed:
        values.update(last_run_at=plan.scheduled_for, last_outcome=plan.outcome)
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
    elif plan.next_run_at is None and schedule.enabled and schedule.ends_at is not None:
        values.update(
            enabled=False,
            paused_note=f"Disabled: no due time is left before its end "
            f"({schedule.ends_at.isoformat()}); move ends_at and enable it to go on.",
            paused_at=now,
        )
    return values
