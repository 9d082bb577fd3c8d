"""A schedule's form (admins only): new and edit, with the live cron preview of the single
schedule page, the overlap policy, jitter, bounds and limits; the edit page also shows the
schedule's state, its pause form and its latest fires. The API's bodies validate the form
and its messages appear at the field."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from app import presets as preset_service, users as user_service
from app.api.deps import ScheduleCommandsDep, Schedules, SessionDep
from app.core.pagination import PageParams
from app.errors import AppError, InvalidError, NotFoundError
from app.scheduling import settings as schedule_settings
from app.scheduling.commands import schedule_detail
from app.scheduling.cron import CronError, parse_timezone
from app.scheduling.models import (
    DEFAULT_JITTER_SECONDS,
    MAX_JITTER_SECONDS,
    FireResponse,
    ScheduleChange,
    ScheduleCreate,
    ScheduleDetail,
)
from app.tables import OverlapPolicy
from app.web.errors import WebError, field_errors, split_field, web_error
from app.web.rendering import flash, render
from app.web.schedule import EXAMPLES, preview, time_zones
from app.web.session import CanAutomate, WebContext

router = APIRouter(include_in_schema=False)

HISTORY_SHOWN = 20
FIELDS = (
    "name",
    "preset_id",
    "cron_expression",
    "timezone",
    "enabled",
    "notify_email",
    "is_default",
    "jitter_seconds",
    "overlap_policy",
    "paused_note",
    "starts_at",
    "ends_at",
    "remaining_runs",
)
TIME_FIELDS = ("starts_at", "ends_at")
LOCAL_FORMAT = "%Y-%m-%dT%H:%M"
POLICIES = {
    OverlapPolicy.SKIP: (
        "Skip",
        "The fire is skipped (and logged) while another run is active.",
    ),
    OverlapPolicy.BUFFER_ONE: (
        "Queue one",
        "The fire waits: its run starts as soon as the active run ends. One waits at most; "
        "a later fire meanwhile is skipped.",
    ),
    OverlapPolicy.CANCEL_OTHER: (
        "Replace",
        "The active run is cancelled (its results so far are kept) and this one starts.",
    ),
}
"""Each overlap policy's name and what it does, in the words of the form and the list."""

Values = dict[str, Any]


def schedule_id_of(value: str) -> uuid.UUID:
    """The id in a schedule's address; anything else is a schedule that is not there."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise WebError(
            status.HTTP_404_NOT_FOUND, "There is no such schedule in this organization."
        ) from None


async def load(session: SessionDep, context: WebContext, schedule_id: str) -> ScheduleDetail:
    """One schedule of the acting organization, or a 404 page saying where it may be."""
    try:
        row = await schedule_settings.get_schedule(
            session, context.org.org_id, schedule_id_of(schedule_id)
        )
    except NotFoundError as exc:
        raise web_error(
            exc,
            missing=f"This schedule is not in {context.org_name}: it was deleted, or it "
            "belongs to another of your organizations (switch organization above).",
        ) from None
    return schedule_detail(*row)


def local_text(moment: datetime | None, timezone: str) -> str:
    """A moment as a datetime-local field shows it: the wall time in `timezone`, seconds
    only when it has some."""
    if moment is None:
        return ""
    local = moment.astimezone(ZoneInfo(timezone))
    return local.strftime(LOCAL_FORMAT + (":%S" if local.second else ""))


def values_of(schedule: ScheduleDetail) -> Values:
    """What the form shows for a saved schedule."""
    return {
        "name": schedule.name,
        "preset_id": str(schedule.preset_id or ""),
        "cron_expression": schedule.cron_expression,
        "timezone": schedule.timezone,
        "overlap_policy": schedule.overlap_policy.value,
        "jitter_seconds": str(schedule.jitter_seconds),
        "notify_email": schedule.notify_email,
        "enabled": schedule.enabled,
        "is_default": schedule.is_default,
        "starts_at": local_text(schedule.starts_at, schedule.timezone),
        "ends_at": local_text(schedule.ends_at, schedule.timezone),
        "remaining_runs": "" if schedule.remaining_runs is None else str(schedule.remaining_runs),
        "paused_note": "",
    }


NEW_VALUES: Values = {
    "name": "",
    "preset_id": "",
    "cron_expression": "0 0 1 * *",
    "timezone": "UTC",
    "overlap_policy": OverlapPolicy.SKIP.value,
    "jitter_seconds": str(DEFAULT_JITTER_SECONDS),
    "notify_email": False,
    "enabled": True,
    "is_default": False,
    "starts_at": "",
    "ends_at": "",
    "remaining_runs": "",
    "paused_note": "",
}


def _moment(text: str, zone: ZoneInfo) -> datetime:
    """A datetime-local value read as a wall time in `zone`; refused (ValueError, in words)
    when it is not a date and time, or when the clocks skip it in that zone."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("enter a date and time, such as 2027-01-31T09:00") from None
    if moment.tzinfo is not None:
        return moment
    local = moment.replace(tzinfo=zone)
    if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != moment:
        raise ValueError(
            f"{text.replace('T', ' ')} does not exist in {zone.key}: the clocks skip it "
            "(daylight saving time). Choose a time outside the gap."
        )
    return local


def body_of(
    values: Values, current: ScheduleDetail | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The API body the form's text stands for, and the errors found on the way (a time
    that is not one, jitter left empty). On the edit page a start or end left as shown
    (in an unchanged zone) is left out, so its seconds are kept."""
    errors: dict[str, str] = {}
    body: dict[str, Any] = {
        "name": values["name"],
        "cron_expression": values["cron_expression"],
        "timezone": values["timezone"],
        "overlap_policy": values["overlap_policy"],
        "notify_email": values["notify_email"],
        "remaining_runs": values["remaining_runs"].strip() or None,
    }
    if values["preset_id"]:  # left empty: none chosen yet (new) or kept as it is (edit)
        body["preset_id"] = values["preset_id"]
    if not values["jitter_seconds"].strip():
        errors["jitter_seconds"] = "enter a number of seconds (0 for none)"
    else:
        body["jitter_seconds"] = values["jitter_seconds"].strip()
    if current is None:
        body["enabled"] = values["enabled"]
        body["is_default"] = values["is_default"]
    elif values["is_default"] and not current.is_default:
        body["is_default"] = True
    try:
        zone: ZoneInfo | None = parse_timezone(values["timezone"])
    except CronError as exc:
        errors["timezone"], zone = exc.message, None
    for name in TIME_FIELDS:
        text = values[name].strip()
        if (
            current is not None
            and current.timezone == values["timezone"]
            and text == local_text(getattr(current, name), current.timezone)
        ):
            continue
        if not text:
            body[name] = None
        elif zone is not None:
            try:
                body[name] = _moment(text, zone)
            except ValueError as exc:
                errors[name] = str(exc)
    return body, errors


def policy_choices() -> list[tuple[str, str, str]]:
    """The policy radio buttons: value, name, one line on what it does."""
    return [(policy.value, *words) for policy, words in POLICIES.items()]


async def form_page(
    request: Request,
    context: WebContext,
    session: SessionDep,
    schedules: Schedules,
    *,
    schedule: ScheduleDetail | None,
    values: Values,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    """The new or edit page (with the edit page's state, pause form and history)."""
    org_id = context.org.org_id
    presets, _ = await preset_service.list_presets(
        session, org_id=org_id, page=PageParams(limit=200)
    )
    fire_times, preview_field, preview_error = await preview(
        context, str(values["cron_expression"]), str(values["timezone"])
    )
    history: list[FireResponse] = []
    paused_by = None
    if schedule is not None:
        fires, _ = await schedules.history(
            session, org_id=org_id, page=PageParams(limit=HISTORY_SHOWN), schedule_id=schedule.id
        )
        history = [FireResponse.model_validate(fire) for fire in fires]
        if schedule.paused_by is not None:
            emails = await user_service.emails_of(session, {schedule.paused_by})
            paused_by = emails.get(schedule.paused_by)
    return render(
        request,
        "schedules/form.html",
        status_code=status_code,
        nav="schedules",
        schedule=schedule,
        jitter=schedule_settings.jitter_offset(schedule.id, schedule.jitter_seconds)
        if schedule
        else None,
        paused_by=paused_by,
        values=values,
        errors=errors or {},
        presets=presets,
        history=history,
        preview=fire_times,
        preview_field=preview_field,
        preview_error=preview_error,
        time_zones=time_zones(),
        examples=EXAMPLES,
        policies=policy_choices(),
        default_jitter=DEFAULT_JITTER_SECONDS,
        max_jitter=MAX_JITTER_SECONDS,
    )


def _form_values(
    name: str,
    preset_id: str,
    cron_expression: str,
    timezone: str,
    overlap_policy: str,
    jitter_seconds: str,
    notify_email: str,
    enabled: str,
    is_default: str,
    starts_at: str,
    ends_at: str,
    remaining_runs: str,
) -> Values:
    return {
        "name": name,
        "preset_id": preset_id,
        "cron_expression": cron_expression,
        "timezone": timezone.strip(),
        "overlap_policy": overlap_policy,
        "jitter_seconds": jitter_seconds,
        "notify_email": bool(notify_email),
        "enabled": bool(enabled),
        "is_default": bool(is_default),
        "starts_at": starts_at,
        "ends_at": ends_at,
        "remaining_runs": remaining_runs,
        "paused_note": "",
    }


def _api_errors(exc: AppError, values: Values) -> dict[str, str]:
    """The API's refusal at the field it names, in the form's words where they differ."""
    if not isinstance(exc, InvalidError):
        raise web_error(exc) from None
    field, message = split_field(exc.message, FIELDS)
    if field == "preset_id":
        message = (
            "Choose a preset: an enabled schedule needs one."
            if not values["preset_id"]
            else "This preset no longer exists (it was deleted): choose another."
        )
    return {field: message}


def saved_message(schedule: ScheduleDetail, verb: str) -> str:
    """What the flash says after a change: when the schedule runs next, in its zone."""
    if schedule.enabled and schedule.next_run_at:
        local = schedule.next_run_at.astimezone(ZoneInfo(schedule.timezone))
        return (
            f"Schedule {schedule.name} {verb}: it runs next on {local:%a %Y-%m-%d at %H:%M:%S} "
            f"{local.tzname()}."
        )
    return f"Schedule {schedule.name} {verb}. It is paused: nothing runs until you resume it."


FormField = Annotated[str, Form()]


@router.get("/schedules/new")
async def new_schedule_page(
    request: Request, context: CanAutomate, session: SessionDep, schedules: Schedules
) -> Response:
    """The form for a new schedule (300 s of jitter unless changed)."""
    return await form_page(
        request, context, session, schedules, schedule=None, values=dict(NEW_VALUES)
    )


@router.get("/schedules/{schedule_id}")
async def edit_schedule_page(
    request: Request,
    schedule_id: str,
    context: CanAutomate,
    session: SessionDep,
    schedules: Schedules,
) -> Response:
    """A schedule's form, state, pause form and latest fires."""
    schedule = await load(session, context, schedule_id)
    return await form_page(
        request, context, session, schedules, schedule=schedule, values=values_of(schedule)
    )


async def _submit(
    request: Request,
    context: WebContext,
    session: SessionDep,
    schedules: Schedules,
    commands: ScheduleCommandsDep,
    schedule: ScheduleDetail | None,
    values: Values,
) -> Response:
    """Create (`schedule` None) or change a schedule from the form; the form again, with
    what was typed and the messages at the fields, when it is refused."""
    body, errors = body_of(values, schedule)
    model = ScheduleCreate if schedule is None else ScheduleChange
    try:
        checked = model.model_validate(body)
    except ValidationError as exc:
        errors = {**field_errors(exc), **errors}
    if not errors:
        try:
            if schedule is None:
                saved = await commands.create(
                    session,
                    org_id=context.org.org_id,
                    fields=checked.model_dump(),
                    actor_id=context.org.user_id,
                )
            else:
                saved = await commands.change(
                    session,
                    org_id=context.org.org_id,
                    schedule_id=schedule.id,
                    changes=checked.model_dump(exclude_unset=True),
                    actor_id=context.org.user_id,
                )
        except AppError as exc:
            errors = _api_errors(exc, values)
        else:
            response = RedirectResponse("/schedules", status_code=status.HTTP_303_SEE_OTHER)
            verb = "created" if schedule is None else "saved"
            return flash(response, request, saved_message(saved, verb))
    await session.rollback()
    if errors.get("preset_id") == "fill in this field":
        errors["preset_id"] = "Choose a preset: each schedule runs one."
    return await form_page(
        request,
        context,
        session,
        schedules,
        schedule=schedule,
        values=values,
        errors=errors,
        status_code=status.HTTP_400_BAD_REQUEST,
    )


@router.post("/schedules")
async def create_schedule(
    request: Request,
    context: CanAutomate,
    session: SessionDep,
    schedules: Schedules,
    commands: ScheduleCommandsDep,
    name: FormField = "",
    preset_id: FormField = "",
    cron_expression: FormField = "",
    timezone: FormField = "",
    overlap_policy: FormField = "",
    jitter_seconds: FormField = "",
    notify_email: FormField = "",
    enabled: FormField = "",
    is_default: FormField = "",
    starts_at: FormField = "",
    ends_at: FormField = "",
    remaining_runs: FormField = "",
) -> Response:
    """Create a schedule (POST /collection/schedules)."""
    values = _form_values(
        name, preset_id, cron_expression, timezone, overlap_policy, jitter_seconds,
        notify_email, enabled, is_default, starts_at, ends_at, remaining_runs,
    )  # fmt: skip
    return await _submit(request, context, session, schedules, commands, None, values)


@router.post("/schedules/{schedule_id}")
async def save_schedule(
    request: Request,
    schedule_id: str,
    context: CanAutomate,
    session: SessionDep,
    schedules: Schedules,
    commands: ScheduleCommandsDep,
    name: FormField = "",
    preset_id: FormField = "",
    cron_expression: FormField = "",
    timezone: FormField = "",
    overlap_policy: FormField = "",
    jitter_seconds: FormField = "",
    notify_email: FormField = "",
    is_default: FormField = "",
    starts_at: FormField = "",
    ends_at: FormField = "",
    remaining_runs: FormField = "",
) -> Response:
    """Change a schedule (PATCH /collection/schedules/{id}); pausing is a form of its own."""
    schedule = await load(session, context, schedule_id)
    values = _form_values(
        name, preset_id, cron_expression, timezone, overlap_policy, jitter_seconds,
        notify_email, "on" if schedule.enabled else "", is_default, starts_at, ends_at,
        remaining_runs,
    )  # fmt: skip
    return await _submit(request, context, session, schedules, commands, schedule, values)
