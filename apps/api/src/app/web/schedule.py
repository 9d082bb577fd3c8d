"""The schedule page (admins only): cron expression with a live preview, time zone, preset,
toggles, "run now", and the history of fires."""

from __future__ import annotations

import functools
import zoneinfo
from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from app import presets as preset_service
from app.api.deps import ScheduleCommandsDep, Schedules, SessionDep
from app.core.pagination import PageParams
from app.errors import AppError, InvalidError
from app.scheduling import commands as schedule_commands
from app.scheduling.commands import FireSkippedError, NoPresetError
from app.scheduling.cron import time_zone_names
from app.scheduling.models import FireResponse, PreviewResponse, ScheduleUpdate
from app.scheduling.schedules import NoScheduleError
from app.web.errors import FORM, field_errors, split_field, web_error
from app.web.rendering import flash, render
from app.web.session import CanAutomate, WebContext

router = APIRouter(include_in_schema=False)

FIELDS = ("preset_id", "cron_expression", "timezone", "enabled", "notify_email")
HISTORY_PER_PAGE = 20
PREVIEW_COUNT = 5
MAX_EXPRESSION = 200
MAX_TIMEZONE = 64
EXAMPLES = (
    ("0 0 1 * *", "monthly, on the 1st at midnight"),
    ("0 6 * * 1", "every Monday at 06:00"),
    ("30 8 * * 1-5", "weekdays at 08:30"),
    ("@daily", "every day at midnight"),
)


@functools.cache
def time_zones() -> list[str]:
    """The time zones the picker offers: those a schedule accepts, UTC first."""
    return time_zone_names()


async def preview(
    context: WebContext, cron_expression: str, timezone: str
) -> tuple[PreviewResponse | None, str | None, str | None]:
    """The next fire times from the API's preview, or the field at fault and its message."""
    # The API's query parameters have these limits; a direct call must apply them itself.
    if len(cron_expression) > MAX_EXPRESSION:
        return None, "cron_expression", f"use at most {MAX_EXPRESSION} characters"
    if len(timezone) > MAX_TIMEZONE:
        return None, "timezone", f"use at most {MAX_TIMEZONE} characters"
    try:
        result = schedule_commands.preview(
            cron_expression.strip(), timezone.strip() or "UTC", after=None, count=PREVIEW_COUNT
        )
    except InvalidError as exc:
        field, message = split_field(exc.message, ("cron_expression", "timezone"))
        return None, field if field != FORM else "cron_expression", message
    return result, None, None


async def _page(
    request: Request,
    context: WebContext,
    session: SessionDep,
    schedules: Schedules,
    *,
    values: dict[str, str | bool | None] | None = None,
    errors: dict[str, str] | None = None,
    cursor: str | None = None,
    status_code: int = 200,
) -> Response:
    schedule = schedule_commands.schedule_response(
        *await schedules.get(session, org_id=context.org.org_id)
    )
    if values is None:
        values = {
            "preset_id": str(schedule.preset_id) if schedule.preset_id else "",
            "cron_expression": schedule.cron_expression,
            "timezone": schedule.timezone,
            "enabled": schedule.enabled,
            "notify_email": schedule.notify_email,
        }
    presets, _ = await preset_service.list_presets(
        session, org_id=context.org.org_id, page=PageParams(limit=200)
    )
    fires, next_cursor = await schedules.history(
        session, org_id=context.org.org_id, page=PageParams(cursor=cursor, limit=HISTORY_PER_PAGE)
    )
    fire_times, preview_field, preview_error = await preview(
        context, str(values["cron_expression"] or ""), str(values["timezone"] or "")
    )
    return render(
        request,
        "schedule.html",
        status_code=status_code,
        nav="schedule",
        schedule=schedule,
        values=values,
        errors=errors or {},
        presets=presets,
        history=[FireResponse.model_validate(fire) for fire in fires],
        next_cursor=next_cursor,
        cursor=cursor,
        preview=fire_times,
        preview_field=preview_field,
        preview_error=preview_error,
        time_zones=time_zones(),
        examples=EXAMPLES,
    )


@router.get("/schedule")
async def schedule_page(
    request: Request,
    context: CanAutomate,
    session: SessionDep,
    schedules: Schedules,
    cursor: str | None = None,
) -> Response:
    """The organization's schedule and its history."""
    return await _page(request, context, session, schedules, cursor=cursor)


@router.post("/schedule")
async def save_schedule(
    request: Request,
    context: CanAutomate,
    session: SessionDep,
    schedules: Schedules,
    commands: ScheduleCommandsDep,
    preset_id: Annotated[str, Form()] = "",
    cron_expression: Annotated[str, Form()] = "",
    timezone: Annotated[str, Form()] = "",
    enabled: Annotated[str, Form()] = "",
    notify_email: Annotated[str, Form()] = "",
) -> Response:
    """Save every field of the form (PATCH /collection/schedule)."""
    values: dict[str, str | bool | None] = {
        "preset_id": preset_id or None,
        "cron_expression": cron_expression,
        "timezone": timezone,
        "enabled": bool(enabled),
        "notify_email": bool(notify_email),
    }
    try:
        body = ScheduleUpdate.model_validate(values)
        saved = await commands.update(
            session,
            org_id=context.org.org_id,
            changes=body.model_dump(exclude_unset=True),
            actor_id=context.org.user_id,
        )
    except ValidationError as exc:
        errors = field_errors(exc)
    except AppError as exc:
        if not isinstance(exc, InvalidError):
            raise web_error(exc) from None
        field, message = split_field(exc.message, FIELDS)
        if field == "preset_id":  # the API's words name its field; the form has a picker
            message = (
                "Choose a preset: an enabled schedule needs one."
                if not preset_id
                else "This preset no longer exists (it was deleted): choose another."
            )
        errors = {field: message}
    else:
        if saved.enabled and saved.next_run_at:
            local = saved.next_run_at.astimezone(zoneinfo.ZoneInfo(saved.timezone))
            message = (
                f"Schedule saved: {saved.preset_name} runs next on "
                f"{local:%a %Y-%m-%d at %H:%M} {local.tzname()}."
            )
        else:
            message = "Schedule saved. It is disabled: nothing runs until you enable it."
        response = RedirectResponse("/schedule", status_code=status.HTTP_303_SEE_OTHER)
        return flash(response, request, message)
    await session.rollback()
    values["preset_id"] = preset_id
    return await _page(
        request,
        context,
        session,
        schedules,
        values=values,
        errors=errors,
        status_code=status.HTTP_400_BAD_REQUEST,
    )


@router.post("/schedule/run-now")
async def run_now(
    request: Request,
    context: CanAutomate,
    session: SessionDep,
    commands: ScheduleCommandsDep,
) -> Response:
    """Run the scheduled preset now (POST /collection/schedule/trigger); logged either way."""
    response = RedirectResponse("/schedule", status_code=status.HTTP_303_SEE_OTHER)
    try:
        fire = await commands.trigger(session, org_id=context.org.org_id)
    except AppError as exc:
        if isinstance(exc, NoScheduleError):
            message = "Save the schedule (with a preset) first, then use Run now."
        elif isinstance(exc, NoPresetError):
            message = (
                "Not started: the schedule has no preset (it was deleted). Choose a preset "
                "above and save, then use Run now."
            )
        elif isinstance(exc, FireSkippedError):
            message = (
                "Not started: another run is active, and one collection runs at a time. "
                "The history below shows the skipped attempt with a link to the active run."
            )
        else:
            message = f"Not started: {exc.message}."
        return flash(response, request, message, error=True)
    if fire.run_id is not None:
        response = RedirectResponse(f"/runs/{fire.run_id}", status_code=status.HTTP_303_SEE_OTHER)
    return flash(response, request, "Run started now from the schedule's preset.")


@router.get("/schedule/preview")
async def schedule_preview(
    request: Request,
    context: CanAutomate,
    cron_expression: str = "",
    timezone: str = "",
) -> Response:
    """The description and next fire times of what the admin is typing (a fragment)."""
    fire_times, field, error = await preview(context, cron_expression, timezone)
    return render(
        request,
        "_schedule_preview.html",
        preview=fire_times,
        preview_field=field,
        preview_error=error,
    )
