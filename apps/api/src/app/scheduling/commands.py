"""What the API and the web pages do to schedules: change one (and wake the engine), run it
now, backfill past due times, preview a cron expression; and what they show of a schedule."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.errors import ConflictError, InvalidError
from app.scheduling import settings
from app.scheduling.backfill import Backfill, BackfilledTime, queue_backfill
from app.scheduling.changes import announce_change
from app.scheduling.cron import CronError, parse
from app.scheduling.engine import CollectionScheduler
from app.scheduling.models import (
    BackfillDueTime,
    BackfillResponse,
    PreviewResponse,
    ScheduleDetail,
    ScheduleResponse,
    run_url,
)
from app.scheduling.schedules import ScheduleService
from app.tables import DEFAULT_CRON_EXPRESSION, CollectionSchedule, FireOutcome, ScheduleFire


class FireSkippedError(ConflictError):
    """A run was active, so the triggered fire was skipped (and logged)."""

    def __init__(self, fire_id: uuid.UUID, detail: str | None) -> None:
        super().__init__(f"skipped: {detail}; logged in the history")
        self.fire_id = fire_id


class FireFailedError(ConflictError):
    """The triggered fire could not start a run (and was logged)."""

    def __init__(self, fire_id: uuid.UUID, detail: str | None) -> None:
        super().__init__(f"failed: {detail}; logged in the history")
        self.fire_id = fire_id


class NoPresetError(InvalidError):
    """The schedule has no preset."""

    def __init__(self, fire_id: uuid.UUID, detail: str | None) -> None:
        super().__init__(detail or "no preset")
        self.fire_id = fire_id


class ScheduleCommands:
    """Changes and manual fires of an organization's schedule."""

    def __init__(self, schedules: ScheduleService, engine: CollectionScheduler) -> None:
        self.schedules = schedules
        self.engine = engine

    async def update(
        self,
        session: AsyncSession,
        *,
        org_id: uuid.UUID,
        changes: dict[str, Any],
        actor_id: uuid.UUID | None = None,
    ) -> ScheduleResponse:
        """Create or change the default schedule (committed); it takes effect at once here
        and on every other replica (within SCHEDULER_POLL_SECONDS on SQLite)."""
        schedule, preset_name = await self.schedules.update(
            session, org_id=org_id, changes=changes, actor_id=actor_id
        )
        await announce_change(session)
        await session.commit()
        self.engine.wake()
        return schedule_response(schedule, preset_name)

    async def create(
        self,
        session: AsyncSession,
        *,
        org_id: uuid.UUID,
        fields: dict[str, Any],
        actor_id: uuid.UUID | None,
    ) -> ScheduleDetail:
        """A new schedule (committed), in effect at once."""
        schedule, preset_name = await self.schedules.create(
            session, org_id=org_id, fields=fields, actor_id=actor_id
        )
        await announce_change(session)
        await session.commit()
        self.engine.wake()
        return schedule_detail(schedule, preset_name)

    async def change(
        self,
        session: AsyncSession,
        *,
        org_id: uuid.UUID,
        schedule_id: uuid.UUID,
        changes: dict[str, Any],
        actor_id: uuid.UUID | None,
    ) -> ScheduleDetail:
        """Change one schedule (committed), in effect at once."""
        schedule, preset_name = await self.schedules.change(
            session, org_id=org_id, schedule_id=schedule_id, changes=changes, actor_id=actor_id
        )
        await announce_change(session)
        await session.commit()
        self.engine.wake()
        return schedule_detail(schedule, preset_name)

    async def delete(
        self, session: AsyncSession, *, org_id: uuid.UUID, schedule_id: uuid.UUID
    ) -> None:
        """Delete one schedule (committed); its runs stay."""
        await settings.delete_schedule(session, org_id, schedule_id)
        await announce_change(session)
        await session.commit()
        self.engine.wake()

    async def trigger(
        self, session: AsyncSession, *, org_id: uuid.UUID, schedule_id: uuid.UUID | None = None
    ) -> ScheduleFire:
        """Run a schedule's preset now (default: the default schedule's), under the skip rule
        of a scheduled fire. The fire is logged whatever its outcome; one that started no
        run raises after the commit."""
        result = await self.schedules.trigger(session, org_id=org_id, schedule_id=schedule_id)
        await session.commit()
        self.engine.handle_fired([result])
        if result.outcome is FireOutcome.SKIPPED:
            raise FireSkippedError(result.fire_id, result.detail)
        if result.outcome is FireOutcome.NO_PRESET:
            raise NoPresetError(result.fire_id, result.detail)
        if result.outcome is FireOutcome.FAILED:
            raise FireFailedError(result.fire_id, result.detail)
        return await session.get_one(ScheduleFire, result.fire_id)

    async def backfill(
        self,
        session: AsyncSession,
        *,
        org_id: uuid.UUID,
        schedule_id: uuid.UUID,
        start: datetime,
        end: datetime,
    ) -> BackfillResponse:
        """Queue runs of the schedule's past due times in [start, end] (committed), each due
        time at most once; the first starts at once when no run is active (this instance's
        executor is poked; any replica's sweep would start it too)."""
        done = await queue_backfill(
            session,
            self.schedules.runs,
            org_id=org_id,
            schedule_id=schedule_id,
            start=start,
            end=end,
            now=self.schedules.clock(),
            instance_id=self.schedules.instance_id,
        )
        await session.commit()
        if done.fires:
            self.engine.handle_fired(done.fires)  # metrics, logs, stops a replaced run here
            self.engine.executor.poke()
        return backfill_response(done)


def backfill_response(done: Backfill) -> BackfillResponse:
    """A backfill as the API shows it."""

    def items(times: list[BackfilledTime]) -> list[BackfillDueTime]:
        return [
            BackfillDueTime(
                scheduled_for=t.scheduled_for,
                fire_id=t.fire_id,
                run_id=t.run_id,
                run_url=run_url(t.run_id),
            )
            for t in times
        ]

    return BackfillResponse(
        schedule_id=done.schedule_id,
        start=done.start,
        end=done.end,
        requested=done.requested,
        queued=items(done.queued),
        already_backfilled=items(done.already_backfilled),
        already_ran=items(done.already_ran),
        replaced_run_id=done.replaced_run_id,
    )


def preview(
    cron_expression: str, timezone: str, *, after: datetime | None, count: int
) -> PreviewResponse:
    """The next `count` fire times after `after` (default now; read in `timezone` when it has
    no offset), fewer near the end of the calendar."""
    cron = settings.parse_cron(cron_expression, timezone)
    start = after or utcnow()
    if start.tzinfo is None:
        start = start.replace(tzinfo=ZoneInfo(cron.timezone))
    try:
        fire_times = cron.fire_times(start, count)
    except ValueError as exc:
        raise InvalidError(str(exc)) from None
    return PreviewResponse(
        cron_expression=cron.expression,
        timezone=cron.timezone,
        description=cron.describe(),
        fire_times=fire_times,
    )


def schedule_detail(schedule: CollectionSchedule, preset_name: str | None) -> ScheduleDetail:
    """One of the organization's schedules, with everything about it."""
    return ScheduleDetail(
        id=schedule.id,
        name=schedule.name,
        preset_id=schedule.preset_id,
        preset_name=preset_name,
        cron_expression=schedule.cron_expression,
        timezone=schedule.timezone,
        description=_description(schedule),
        enabled=schedule.enabled,
        is_default=schedule.is_default,
        notify_email=schedule.notify_email,
        jitter_seconds=schedule.jitter_seconds,
        overlap_policy=schedule.overlap_policy,
        paused_note=schedule.paused_note,
        paused_by=schedule.paused_by,
        paused_at=schedule.paused_at,
        starts_at=schedule.starts_at,
        ends_at=schedule.ends_at,
        remaining_runs=schedule.remaining_runs,
        last_run_at=schedule.last_run_at,
        last_outcome=schedule.last_outcome,
        next_run_at=schedule.next_run_at,
        created_at=schedule.created_at,
        updated_at=schedule.updated_at,
    )


def _description(schedule: CollectionSchedule) -> str:
    try:
        return parse(schedule.cron_expression, schedule.timezone).describe()
    except CronError as exc:
        return f"invalid: {exc}"


def schedule_response(
    schedule: CollectionSchedule | None, preset_name: str | None
) -> ScheduleResponse:
    """A schedule as the API and the pages show it; the defaults when none was saved."""
    if schedule is None:
        return ScheduleResponse(
            id=None,
            preset_id=None,
            preset_name=None,
            cron_expression=DEFAULT_CRON_EXPRESSION,
            timezone="UTC",
            description=parse(DEFAULT_CRON_EXPRESSION, "UTC").describe(),
            enabled=False,
            notify_email=False,
            last_run_at=None,
            last_outcome=None,
            next_run_at=None,
        )
    description = _description(schedule)
    return ScheduleResponse(
        id=schedule.id,
        preset_id=schedule.preset_id,
        preset_name=preset_name,
        cron_expression=schedule.cron_expression,
        timezone=schedule.timezone,
        description=description,
        enabled=schedule.enabled,
        notify_email=schedule.notify_email,
        last_run_at=schedule.last_run_at,
        last_outcome=schedule.last_outcome,
        next_run_at=schedule.next_run_at,
    )
