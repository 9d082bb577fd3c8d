"""Schedules: an organization's schedules (`/collection/schedules`), the seed's one schedule
(`/collection/schedule`, which acts on the default one), their fire history (filtered), run
now, backfill, and a preview of any cron expression's next fire times."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from app.api.deps import CanAutomate, CanView, ScheduleCommandsDep, Schedules, SessionDep
from app.api.errors import AUTH_ERRORS, Responses, invalid_query
from app.api.openapi import ERROR_SCHEMA
from app.core.pagination import Page, PageParams, page_params
from app.models import UtcMoment
from app.scheduling import settings
from app.scheduling.commands import preview, schedule_detail, schedule_response
from app.scheduling.fires import FireFilter
from app.scheduling.models import (
    BackfillRequest,
    BackfillResponse,
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
from app.tables import FireOutcome

router = APIRouter(prefix="/collection", tags=["collection"])


def fire_filter(
    outcome: Annotated[
        list[FireOutcome] | None,
        Query(description="Only fires with one of these outcomes (repeat for several)."),
    ] = None,
    since: Annotated[
        UtcMoment | None,
        Query(description="Only due times at or after this moment (with its UTC offset)."),
    ] = None,
    until: Annotated[
        UtcMoment | None,
        Query(description="Only due times before this moment (with its UTC offset)."),
    ] = None,
    backfill: Annotated[
        bool | None, Query(description="Only backfills (true), or none of them (false).")
    ] = None,
) -> FireFilter:
    """The history's filters; a `next_cursor` continues the list of the same filters."""
    if since is not None and until is not None and since >= until:
        message = f"until ({until.isoformat()}) must be after since ({since.isoformat()})"
        raise invalid_query("until", message, until.isoformat())
    return FireFilter(tuple(outcome or ()), since, until, backfill)


FireFilterDep = Annotated[FireFilter, Depends(fire_filter)]

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
    only: FireFilterDep,
) -> Page[FireResponse]:
    """Recent fires, newest first: due time, outcome and the run started (or skipped for);
    filtered by outcome, due time and backfill when asked."""
    fires, next_cursor = await schedules.history(session, org_id=ctx.org_id, page=page, only=only)
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
    only: FireFilterDep,
) -> Page[FireResponse]:
    """The schedule's fires, newest first: due time, outcome and the run started, queued
    (or skipped for), backfills included; filtered by outcome (`?outcome=skipped&outcome=
    missed`), due time (`since` inclusive, `until` exclusive) and `backfill` when asked.
    Pass `next_cursor` back with the same filters. Admins only."""
    fires, next_cursor = await schedules.history(
        session, org_id=ctx.org_id, page=page, schedule_id=schedule_id, only=only
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


@router.post(
    "/schedules/{schedule_id}/backfill",
    response_model=BackfillResponse,
    status_code=status.HTTP_202_ACCEPTED,
    response_description="The due times queued now, and those backfilled or run before.",
    responses={
        **AUTH_ERRORS,
        **SCHEDULE_NOT_FOUND,
        400: {"description": "The schedule has no preset."},
        409: {
            "description": "A run is active and the schedule's overlap policy is skip "
            "(nothing is written), or its preset cannot be run."
        },
        422: {
            "description": "The body is not valid (a datetime without its offset, an unknown "
            "field, end not after start), or the window does not fit: end in the future, no "
            "due time in it, or more than 100. The message says what to change; nothing is "
            "written.",
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [
                            {"$ref": "#/components/schemas/HTTPValidationError"},
                            ERROR_SCHEMA,
                        ]
                    }
                }
            },
        },
    },
)
async def backfill_schedule(
    schedule_id: uuid.UUID,
    body: BackfillRequest,
    ctx: CanAutomate,
    session: SessionDep,
    commands: ScheduleCommandsDep,
) -> BackfillResponse:
    """Run the schedule's past due times in a window again: each due time (its cron times
    in [start, end], within starts_at/ends_at) gets a queued run, and the runs start one
    after another in due-time order. At most 100 per request; each due time at most once,
    even when asked twice; a due time whose own fire started a run is left alone. While a
    run is active: `skip` refuses (409), `buffer_one` queues behind it, `cancel_other`
    cancels it. Backfills do not count in `remaining_runs` and leave the schedule's
    next and last run times alone; a disabled schedule can be backfilled. Admins only."""
    return await commands.backfill(
        session, org_id=ctx.org_id, schedule_id=schedule_id, start=body.start, end=body.end
    )
