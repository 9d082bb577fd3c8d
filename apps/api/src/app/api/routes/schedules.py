"""The organization's schedule: read and change it, its fire history, run it now, and a
preview of any cron expression's next fire times."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from app.api.deps import CanAutomate, CanView, ScheduleCommandsDep, Schedules, SessionDep
from app.api.errors import AUTH_ERRORS, Responses
from app.core.pagination import Page, PageParams, page_params
from app.models import (
    CronText,
    FireResponse,
    PreviewResponse,
    ScheduleResponse,
    ScheduleUpdate,
    TimeZoneName,
)
from app.scheduling.commands import preview, schedule_response

router = APIRouter(prefix="/collection", tags=["collection"])

BAD_SCHEDULE: Responses = {
    400: {"description": "Invalid cron expression, time zone or preset (the message says which)."}
}


@router.get("/schedule", response_model=ScheduleResponse, responses=AUTH_ERRORS)
async def get_schedule(
    ctx: CanAutomate, session: SessionDep, schedules: Schedules
) -> ScheduleResponse:
    """The organization's schedule, or the defaults (`0 0 1 * *`, UTC, disabled) when none
    was saved. Admins only."""
    schedule, preset_name = await schedules.get(session, org_id=ctx.org_id)
    return schedule_response(schedule, preset_name)


@router.patch(
    "/schedule", response_model=ScheduleResponse, responses={**AUTH_ERRORS, **BAD_SCHEDULE}
)
async def update_schedule(
    body: ScheduleUpdate, ctx: CanAutomate, session: SessionDep, commands: ScheduleCommandsDep
) -> ScheduleResponse:
    """Create or change the schedule. Takes effect at once here and within
    SCHEDULER_POLL_SECONDS on every other replica. Admins only."""
    return await commands.update(
        session, org_id=ctx.org_id, changes=body.model_dump(exclude_unset=True)
    )


@router.get("/schedule/history", response_model=Page[FireResponse], responses=AUTH_ERRORS)
async def schedule_history(
    ctx: CanAutomate,
    session: SessionDep,
    schedules: Schedules,
    page: Annotated[PageParams, Depends(page_params)],
) -> Page[FireResponse]:
    """Recent fires, newest first: due time, outcome and the run started (or skipped for)."""
    fires, next_cursor = await schedules.history(session, org_id=ctx.org_id, page=page)
    return Page(items=[FireResponse.model_validate(f) for f in fires], next_cursor=next_cursor)


@router.post(
    "/schedule/trigger",
    response_model=FireResponse,
    status_code=status.HTTP_201_CREATED,
    responses={
        **AUTH_ERRORS,
        400: {"description": "The schedule has no preset."},
        404: {"description": "The organization has no schedule yet."},
        409: {
            "description": "Skipped (a run is active), or failed (the preset cannot be run); "
            "logged in the history either way."
        },
    },
)
async def trigger_schedule(
    ctx: CanAutomate, session: SessionDep, commands: ScheduleCommandsDep
) -> FireResponse:
    """Run the scheduled preset now, under the same skip rule as a scheduled fire; the
    attempt is logged in the history either way."""
    fire = await commands.trigger(session, org_id=ctx.org_id)
    return FireResponse.model_validate(fire)


@router.get(
    "/schedule/preview",
    response_model=PreviewResponse,
    responses={**AUTH_ERRORS, **BAD_SCHEDULE},
)
async def preview_schedule(
    ctx: CanView,
    cron_expression: Annotated[CronText, Query(examples=["0 9 * * 1-5"])],
    timezone: Annotated[TimeZoneName, Query()] = "UTC",
    after: Annotated[
        datetime | None,
        Query(
            description="Start (exclusive); without an offset it is read in `timezone`. "
            "Default: now."
        ),
    ] = None,
    count: Annotated[int, Query(ge=1, le=100)] = 5,
) -> PreviewResponse:
    """The next fire times of a cron expression in a time zone (any member may ask)."""
    return preview(cron_expression, timezone, after=after, count=count)
