"""What the API and the web pages do to schedules: change one (and wake the engine), run it
now, preview a cron expression; and what they show of a schedule."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.errors import ConflictError, InvalidError
from app.models import PreviewResponse, ScheduleResponse
from app.scheduling.cron import CronError, parse
from app.scheduling.engine import CollectionScheduler
from app.scheduling.schedules import ScheduleError, ScheduleService
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
        self, session: AsyncSession, *, org_id: uuid.UUID, changes: dict[str, Any]
    ) -> ScheduleResponse:
        """Create or change the schedule (committed); it takes effect at once here and
        within SCHEDULER_POLL_SECONDS on every other replica."""
        schedule, preset_name = await self.schedules.update(session, org_id=org_id, changes=changes)
        await session.commit()
        self.engine.wake()
        return schedule_response(schedule, preset_name)

    async def trigger(self, session: AsyncSession, *, org_id: uuid.UUID) -> ScheduleFire:
        """Run the scheduled preset now, under the skip rule of a scheduled fire. The fire is
        logged whatever its outcome; one that started no run raises after the commit."""
        result = await self.schedules.trigger(session, org_id=org_id)
        await session.commit()
        self.engine.handle_fired([result])
        if result.outcome is FireOutcome.SKIPPED:
            raise FireSkippedError(result.fire_id, result.detail)
        if result.outcome is FireOutcome.NO_PRESET:
            raise NoPresetError(result.fire_id, result.detail)
        if result.outcome is FireOutcome.FAILED:
            raise FireFailedError(result.fire_id, result.detail)
        return await session.get_one(ScheduleFire, result.fire_id)


def preview(
    cron_expression: str, timezone: str, *, after: datetime | None, count: int
) -> PreviewResponse:
    """The next `count` fire times after `after` (default now; read in `timezone` when it has
    no offset), fewer near the end of the calendar."""
    try:
        cron = parse(cron_expression, timezone)
    except CronError as exc:
        field_name = "timezone" if exc.field == "timezone" else "cron_expression"
        raise ScheduleError(field_name, str(exc)) from None
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
    try:
        description = parse(schedule.cron_expression, schedule.timezone).describe()
    except CronError as exc:
        description = f"invalid: {exc}"
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
