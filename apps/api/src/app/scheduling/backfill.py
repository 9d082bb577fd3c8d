"""Backfill: a schedule's past due times in a window, fired once more on request, as queued
runs that start one after another, in due-time order, under the schedule's overlap policy.

Each due time is backfilled at most once: its fire row (`backfill` true) is claimed by an
insert that ignores conflicts on (schedule, due time, backfill), so two requests for the
same window, even at the same moment, queue each run once; the loser reports the winner's.
A due time whose own fire started a run is not backfilled (`already_ran`). Backfill runs
are queued (`Leases.start_queued` starts them after the schedules' own queued runs, by due
time), they do not count down `remaining_runs`, and they leave `next_run_at`,
`last_run_at` and `last_outcome` as they are: the schedule's own timing does not change. A
disabled schedule can be backfilled. Due times the schedule has still to fire itself (from
its pending due time on) are left to it, so no due time runs twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.categories import invalid_category_id
from app.core.database import insert_ignoring_conflicts
from app.errors import ConflictError, InvalidError, UnprocessableError
from app.runs.lifecycle import (
    PresetUnusableError,
    RunLifecycle,
    RunSpec,
    TransitionNotAllowedError,
)
from app.scheduling import settings
from app.scheduling.cron import CronError, CronSchedule, parse
from app.scheduling.fires import FireResult
from app.scheduling.models import MAX_BACKFILL
from app.tables import (
    CategoryPreset,
    CollectionSchedule,
    FireOutcome,
    OverlapPolicy,
    RunStatus,
    RunTrigger,
    ScheduleFire,
)

MAX_COUNTED = 10_000
"""How far a window too large is counted, to say how many due times it holds."""
RAN = (FireOutcome.STARTED, FireOutcome.QUEUED, FireOutcome.REPLACED)


class BackfillWindowError(UnprocessableError):
    """The window holds no due time to backfill, or too many, or ends in the future."""


class BackfillBlockedError(ConflictError):
    """A run is active and the schedule's overlap policy is skip."""

    def __init__(self, run_id: uuid.UUID, status: RunStatus) -> None:
        super().__init__(
            f"a run is active (run {run_id}, {status.value}); this schedule's overlap policy "
            "is skip: retry when it ends, or set overlap_policy to buffer_one"
        )
        self.run_id = run_id


class BackfillNoPresetError(InvalidError):
    """The schedule has no preset to run."""

    def __init__(self, schedule_id: uuid.UUID) -> None:
        super().__init__("the schedule has no preset: set preset_id first")
        self.schedule_id = schedule_id


@dataclass(frozen=True, slots=True)
class BackfilledTime:
    """One due time of a backfill and the fire and run that stand for it."""

    scheduled_for: datetime
    fire_id: uuid.UUID | None
    run_id: uuid.UUID | None


@dataclass(slots=True)
class Backfill:
    """What one backfill request did, due time by due time."""

    schedule_id: uuid.UUID
    start: datetime
    end: datetime
    requested: int
    queued: list[BackfilledTime] = field(default_factory=list)
    already_backfilled: list[BackfilledTime] = field(default_factory=list)
    already_ran: list[BackfilledTime] = field(default_factory=list)
    replaced_run_id: uuid.UUID | None = None
    fires: list[FireResult] = field(default_factory=list)
    """The new fires, for the engine's follow-up (metrics, logs, stopping a replaced run)."""


def _between(cron: CronSchedule, low: datetime, high: datetime) -> Iterator[datetime]:
    """The cron times t with low <= t <= high, in order (as aware UTC)."""
    after = low - timedelta(microseconds=1)
    while True:
        chunk = cron.fire_times(after, MAX_BACKFILL + 1)
        for moment in chunk:
            if moment > high:
                return
            yield moment.astimezone(UTC)
        if len(chunk) <= MAX_BACKFILL:  # the end of the calendar
            return
        after = chunk[-1]


def due_times(
    schedule: CollectionSchedule, start: datetime, end: datetime, *, now: datetime
) -> list[datetime]:
    """The schedule's due times to backfill in [start, end]: within its starts_at/ends_at,
    and before the due time it has still to fire itself; at most MAX_BACKFILL of them."""
    if end > now:
        raise BackfillWindowError(
            f"end {end.isoformat()} is in the future (it is {now.isoformat()} now): a backfill "
            "runs due times that have passed; ask for an end at or before now"
        )
    try:
        cron = parse(schedule.cron_expression, schedule.timezone)
    except CronError as exc:  # saved by an older, laxer version
        raise settings.ScheduleError("cron_expression", str(exc)) from None
    low, high, bounds = start, end, []
    if schedule.starts_at is not None and schedule.starts_at > low:
        low = schedule.starts_at
        bounds.append(f"the schedule starts at {low.isoformat()}")
    if schedule.ends_at is not None and schedule.ends_at < high:
        high = schedule.ends_at
        bounds.append(f"the schedule ends at {high.isoformat()}")
    if schedule.enabled and schedule.next_run_at is not None:
        pending = schedule.next_run_at - settings.jitter_offset(
            schedule.id, schedule.jitter_seconds
        )
        if pending <= high:
            high = pending - timedelta(microseconds=1)
            bounds.append(f"due times from {pending.isoformat()} on are the schedule's own to fire")
    times: list[datetime] = []
    if low <= high:
        for moment in _between(cron, low, high):
            times.append(moment)
            if len(times) >= MAX_COUNTED:
                break
    window = f"between {start.isoformat()} and {end.isoformat()}"
    if not times:
        raise BackfillWindowError(
            f"no due time of {cron.expression!r} ({cron.timezone}) lies {window}"
            + (f" ({'; '.join(bounds)})" if bounds else "")
            + ": widen the window"
        )
    if len(times) > MAX_BACKFILL:
        count = f"more than {MAX_COUNTED:,}" if len(times) >= MAX_COUNTED else f"{len(times):,}"
        raise BackfillWindowError(
            f"the window {window} holds {count} due times of {cron.expression!r} "
            f"({cron.timezone}); a backfill runs at most {MAX_BACKFILL}: narrow the window"
        )
    return times


async def queue_backfill(
    session: AsyncSession,
    runs: RunLifecycle,
    *,
    org_id: uuid.UUID,
    schedule_id: uuid.UUID,
    start: datetime,
    end: datetime,
    now: datetime,
    instance_id: str,
) -> Backfill:
    """Queue a run for each of the schedule's due times in [start, end] that neither ran
    nor was backfilled before, in the caller's transaction (see the module docstring)."""
    schedule, preset_name = await settings.get_schedule(session, org_id, schedule_id)
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    times = due_times(schedule, start, end, now=now)
    result = Backfill(schedule.id, start, end, requested=len(times))
    existing = await _existing(session, schedule.id, times)
    for moment in times:
        fire = existing.get((moment, False))
        if fire is not None and (
            fire.outcome is FireOutcome.STARTED or (fire.outcome in RAN and fire.run_id is not None)
        ):
            result.already_ran.append(BackfilledTime(moment, fire.id, fire.run_id))
        elif (fire := existing.get((moment, True))) is not None:
            result.already_backfilled.append(BackfilledTime(moment, fire.id, fire.run_id))
    done = {t.scheduled_for for t in (*result.already_ran, *result.already_backfilled)}
    todo = [moment for moment in times if moment not in done]
    if not todo:
        return result
    category_ids = await _categories(session, schedule)
    active = await runs.active_run(session, org_id=org_id)
    # Backfill runs never wait on or cancel each other by policy: they queue in due-time order.
    blocking = active if active is not None and active.trigger is not RunTrigger.BACKFILL else None
    if blocking is not None and schedule.overlap_policy is OverlapPolicy.SKIP:
        raise BackfillBlockedError(blocking.id, blocking.status)
    claimed = await _claim(session, schedule, todo, now=now, instance_id=instance_id)
    if lost := [moment for moment in todo if moment not in claimed]:
        # claimed by a request at the same moment (committed by now): that one runs them
        theirs = await _existing(session, schedule.id, lost)
        for moment in lost:
            fire = theirs.get((moment, True))
            result.already_backfilled.append(
                BackfilledTime(moment, fire.id if fire else None, fire.run_id if fire else None)
            )
        result.already_backfilled.sort(key=lambda item: item.scheduled_for)
    if not claimed:
        return result
    note = None
    if blocking is not None and schedule.overlap_policy is OverlapPolicy.CANCEL_OTHER:
        was = blocking.status  # before the cancel refreshes the row
        try:
            cancelled = await runs.cancel_run(session, org_id=org_id, run_id=blocking.id)
            now_status = f", now {cancelled.status.value}"
        except TransitionNotAllowedError:  # cancelling already
            now_status = ""
        result.replaced_run_id = blocking.id
        note = (
            f"cancelled run {blocking.id} ({was.value}){now_status}; starts once it reads cancelled"
        )
    elif active is not None:
        note = f"waits for run {active.id} ({active.status.value}) to end"
    await _queue(session, runs, schedule, preset_name, category_ids, claimed, note, result)
    result.fires = [
        FireResult(
            fire_id=claimed[queued.scheduled_for],
            schedule_id=schedule.id,
            org_id=org_id,
            scheduled_for=queued.scheduled_for,
            fired_at=now,
            outcome=FireOutcome.QUEUED,
            run_id=queued.run_id,
            detail=None,
            notify=False,
            replaced_run_id=result.replaced_run_id if index == 0 else None,
            policy=schedule.overlap_policy,
            backfill=True,
        )
        for index, queued in enumerate(result.queued)
    ]
    return result


async def _existing(
    session: AsyncSession, schedule_id: uuid.UUID, times: list[datetime]
) -> dict[tuple[datetime, bool], ScheduleFire]:
    """The schedule's fires of these due times, by (due time, backfill)."""
    fires = await session.scalars(
        sa.select(ScheduleFire).where(
            ScheduleFire.schedule_id == schedule_id, ScheduleFire.scheduled_for.in_(times)
        )
    )
    return {(fire.scheduled_for, fire.backfill): fire for fire in fires}


async def _categories(session: AsyncSession, schedule: CollectionSchedule) -> list[str]:
    """The categories the schedule's preset collects; refused when it has none it can run."""
    row = None
    if schedule.preset_id is not None:
        row = (
            await session.execute(
                sa.select(CategoryPreset.name, CategoryPreset.category_ids).where(
                    CategoryPreset.id == schedule.preset_id
                )
            )
        ).first()
    if row is None or schedule.preset_id is None or not row.category_ids:
        raise BackfillNoPresetError(schedule.id)
    if problem := invalid_category_id(row.category_ids):
        raise PresetUnusableError(schedule.preset_id, row.name, problem)
    return list(row.category_ids)


async def _claim(
    session: AsyncSession,
    schedule: CollectionSchedule,
    times: list[datetime],
    *,
    now: datetime,
    instance_id: str,
) -> dict[datetime, uuid.UUID]:
    """Insert the backfill fires of `times`; those this request won, by due time."""
    fire_ids = {moment: uuid.uuid4() for moment in times}
    rows = [
        {
            "id": fire_id,
            "schedule_id": schedule.id,
            "org_id": schedule.org_id,
            "scheduled_for": moment,
            "fired_at": now,
            "instance_id": instance_id,
            "manual": False,
            "backfill": True,
        }
        for moment, fire_id in fire_ids.items()
    ]
    won = set(
        await session.scalars(
            insert_ignoring_conflicts(
                session,
                ScheduleFire,
                index_elements=["schedule_id", "scheduled_for", "backfill"],
            ).returning(ScheduleFire.id),
            rows,
        )
    )
    return {moment: fire_id for moment, fire_id in fire_ids.items() if fire_id in won}


async def _queue(
    session: AsyncSession,
    runs: RunLifecycle,
    schedule: CollectionSchedule,
    preset_name: str | None,
    category_ids: list[str],
    claimed: dict[datetime, uuid.UUID],
    note: str | None,
    result: Backfill,
) -> None:
    """A queued run for each claimed due time, and its fire's outcome."""
    times = sorted(claimed)
    label = preset_name or "Scheduled run"
    specs = [
        RunSpec(
            org_id=schedule.org_id,
            name=f"{label} (backfill of {moment:%Y-%m-%d %H:%M} UTC)",
            category_ids=category_ids,
            created_by=None,
            trigger=RunTrigger.BACKFILL,
            schedule_id=schedule.id,
            preset_id=schedule.preset_id,
            scheduled_for=moment,
        )
        for moment in times
    ]
    run_ids = await runs.create_runs(session, specs, queued=True)
    updates = []
    for index, (moment, run_id) in enumerate(zip(times, run_ids, strict=True)):
        # the one-queued-run index leaves backfill runs out: each insert creates its run
        assert run_id is not None, "a backfill run was refused"
        detail = f"backfill of due time {moment.isoformat()}"
        if note and index == 0:
            detail += f"; {note}"
        updates.append(
            {
                "id": claimed[moment],
                "outcome": FireOutcome.QUEUED,
                "run_id": run_id,
                "detail": detail,
            }
        )
        result.queued.append(BackfilledTime(moment, claimed[moment], run_id))
    await session.execute(sa.update(ScheduleFire), updates)
