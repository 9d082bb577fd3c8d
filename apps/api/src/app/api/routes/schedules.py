"""Schedules: an organization's schedules (`/collection/schedules`), the seed's one schedule
(`/collection/schedule`, which acts on the default one), their fire history, run now, and a
preview of any cron expression's next fire times."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from app.api.deps import CanAutomate, CanView, ScheduleCommandsDep, Schedules, SessionDep
from app.api.errors import AUTH_ERRORS, Responses
from app.core.pagination import Page, PageParams, page_params
from app.scheduling import settings
from app.scheduling.commands import preview, schedule_detail, schedule_response
from app.scheduling.models import (
    CronText,
    FireResponse,
    PreviewResponse,
    ScheduleChange,
    ScheduleCreate,
    ScheduleDetail,
    ScheduleResponse,
    ScheduleUpdate,
    TimeZoneName,
)

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
        session,
        org_id=ctx.org_id,
        changes=body.model_dump(exclude_unset=True),
        actor_id=ctx.user_id,
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


# --- several schedules ------------------------------------------------------------------

SCHEDULE_NOT_FOUND: Responses = {
    404: {"description": "No such schedule in the acting organization."}
}


@router.get("/schedules", response_model=Page[ScheduleDetail], responses=AUTH_ERRORS)
async def list_schedules(
    ctx: CanAutomate, session: SessionDep, page: Annotated[PageParams, Depends(page_params)]
) -> Page[ScheduleDetail]:
    """The organization's schedules, newest first. Admins only."""
    rows, next_cursor = await settings.list_schedules(session, ctx.org_id, page)
    return Page(items=[schedule_detail(*row) for row in rows], next_cursor=next_cursor)


@router.post(
    "/schedules",
    response_model=ScheduleDetail,
    status_code=status.HTTP_201_CREATED,
    responses={**AUTH_ERRORS, **BAD_SCHEDULE},
)
async def create_schedule(
    body: ScheduleCreate, ctx: CanAutomate, session: SessionDep, commands: ScheduleCommandsDep
) -> ScheduleDetail:
    """A new schedule of a preset; enabled unless asked otherwise, and with 300 s of jitter
    unless told otherwise. The organization's first schedule is its default. Admins only."""
    return await commands.create(
        session, org_id=ctx.org_id, fields=body.model_dump(), actor_id=ctx.user_id
    )


@router.get(
    "/schedules/{schedule_id}",
    response_model=ScheduleDetail,
    responses={**AUTH_ERRORS, **SCHEDULE_NOT_FOUND},
)
async def get_schedule_by_id(
    schedule_id: uuid.UUID, ctx: CanAutomate, session: SessionDep
) -> ScheduleDetail:
    """One schedule. Admins only."""
    return schedule_detail(*await settings.get_schedule(session, ctx.org_id, schedule_id))


@router.patch(
    "/schedules/{schedule_id}",
    response_model=ScheduleDetail,
    responses={**AUTH_ERRORS, **SCHEDULE_NOT_FOUND, **BAD_SCHEDULE},
)
async def change_schedule(
    schedule_id: uuid.UUID,
    body: ScheduleChange,
    ctx: CanAutomate,
    session: SessionDep,
    commands: ScheduleCommandsDep,
) -> ScheduleDetail:
    """Change a schedule; fields left out keep their value. `enabled: false` with a
    `paused_note` pauses it saying why (who and when are recorded); enabling fires from the
    next due time on. Admins only."""
    return await commands.change(
        session,
        org_id=ctx.org_id,
        schedule_id=schedule_id,
        changes=body.model_dump(exclude_unset=True),
        actor_id=ctx.user_id,
    )


@router.delete(
    "/schedules/{schedule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={**AUTH_ERRORS, **SCHEDULE_NOT_FOUND},
)
async def delete_schedule(
    schedule_id: uuid.UUID, ctx: CanAutomate, session: SessionDep, commands: ScheduleCommandsDep
) -> None:
    """Delete a schedule and its fire history; the runs it started stay. When it was the
    default, the oldest remaining schedule becomes the default. Admins only."""
    await commands.delete(session, org_id=ctx.org_id, schedule_id=schedule_id)


@router.get(
    "/schedules/{schedule_id}/history",
    response_model=Page[FireResponse],
    responses={**AUTH_ERRORS, **SCHEDULE_NOT_FOUND},
)
async def schedule_fires(
    schedule_id: uuid.UUID,
    ctx: CanAutomate,
    session: SessionDep,
    schedules: Schedules,
    page: Annotated[PageParams, Depends(page_params)],
) -> Page[FireResponse]:
    """The schedule's fires, newest first: due time, outcome and the run started (or
    skipped for). Admins only."""
    fires, next_cursor = await schedules.history(
        session, org_id=ctx.org_id, page=page, schedule_id=schedule_id
    )
    return Page(items=[FireResponse.model_validate(f) for f in fires], next_cursor=next_cursor)


@router.post(
    "/schedules/{schedule_id}/trigger",
    response_model=FireResponse,
    status_code=status.HTTP_201_CREATED,
    responses={
        **AUTH_ERRORS,
        **SCHEDULE_NOT_FOUND,
        400: {"description": "The schedule has no preset."},
        409: {
            "description": "Skipped (a run is active), or failed (the preset cannot be run); "
            "logged in the history either way."
        },
    },
)
async def trigger_schedule_by_id(
    schedule_id: uuid.UUID, ctx: CanAutomate, session: SessionDep, commands: ScheduleCommandsDep
) -> FireResponse:
    """Run the schedule's preset now, under the same skip rule as a scheduled fire; logged
    in its history either way, and not counted in `remaining_runs`. Admins only."""
    fire = await commands.trigger(session, org_id=ctx.org_id, schedule_id=schedule_id)
    return FireResponse.model_validate(fire)
