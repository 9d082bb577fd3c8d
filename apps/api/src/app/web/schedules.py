"""The schedules page (admins only): every schedule of the organization with its next fire
(in its zone and the reader's), last outcome, overlap policy and pause note, and a 30-day
calendar of the fires to come with their overlaps; and the buttons of one schedule: pause
with a note, resume, run now, delete."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import RedirectResponse, Response
from pydantic import TypeAdapter, ValidationError

from app import users as user_service
from app.api.deps import Runs, ScheduleCommandsDep, Schedules, SessionDep
from app.core.pagination import MAX_LIMIT, PageParams
from app.errors import AppError, InvalidError
from app.scheduling import settings as schedule_settings
from app.scheduling.commands import FireSkippedError, NoPresetError, schedule_detail
from app.scheduling.cron import CronError, parse, parse_timezone
from app.scheduling.models import FireResponse, PauseNote, ScheduleDetail
from app.web import schedule_calendar as calendar
from app.web.errors import field_errors, web_error
from app.web.rendering import flash, render
from app.web.schedule import time_zones
from app.web.schedule_form import POLICIES, form_page, load, saved_message, values_of
from app.web.session import CanAutomate, safe_next

router = APIRouter(include_in_schema=False)

CHIPS_PER_DAY = 6
"""Fires shown in a day's column before the rest fold into "N more"."""
COLORS = 8  # app.css has a color for each of sched-0 … sched-7


@dataclass(frozen=True, slots=True)
class Listed:
    """One schedule as the list shows it."""

    schedule: ScheduleDetail
    jitter: timedelta
    last_fire: FireResponse | None
    paused_by: str | None
    color: int


@dataclass(frozen=True, slots=True)
class Calendar:
    """The strip: its zone, days, overlaps (by the second fire), and how it was estimated."""

    zone: str
    days: list[calendar.Day]
    overlaps: list[calendar.Overlap]
    overlap_of: dict[tuple[uuid.UUID, datetime], calendar.Overlap]
    upcoming: list[calendar.Upcoming]
    estimates: dict[uuid.UUID, calendar.Estimate]
    zone_error: str | None


def _ordered(schedules: list[ScheduleDetail]) -> list[ScheduleDetail]:
    """The default schedule first, then by name: the order of the list and its colors."""
    return sorted(schedules, key=lambda s: (not s.is_default, s.name.casefold(), str(s.id)))


def _calendar_zone(wanted: str, schedules: list[ScheduleDetail]) -> tuple[str, str | None]:
    """The zone the calendar's days are in: the one asked for, else the default schedule's
    (else UTC); and why the one asked for was not used."""
    fallback = next((s.timezone for s in schedules if s.is_default), "UTC")
    if not wanted:
        return fallback, None
    try:
        return parse_timezone(wanted).key, None
    except CronError as exc:
        return fallback, f"{exc.message}. The days are in {fallback} instead."


def _calendar(
    schedules: list[Listed],
    recent_runs: list[tuple[uuid.UUID | None, timedelta]],
    now: datetime,
    wanted_zone: str,
) -> Calendar:
    """The 30-day strip of the enabled schedules' fires and their overlaps."""
    zone_name, zone_error = _calendar_zone(wanted_zone, [item.schedule for item in schedules])
    zone = ZoneInfo(zone_name)
    dates, end = calendar.window(now, zone)
    enabled = [item for item in schedules if item.schedule.enabled]
    estimates = calendar.run_length_estimates(
        [(i.schedule.id, i.schedule.preset_id, i.schedule.preset_name) for i in enabled],
        recent_runs,
    )
    upcoming: list[calendar.Upcoming] = []
    for item in enabled:
        s = item.schedule
        try:
            cron = parse(s.cron_expression, s.timezone)
        except CronError:
            continue  # saved by an older, laxer version: the list says it is invalid
        timing = schedule_settings.Timing(cron, item.jitter, s.starts_at, s.ends_at)
        entry = calendar.CalendarSchedule(
            s.id, s.name, timing, s.overlap_policy, s.remaining_runs, item.color
        )
        upcoming.append(calendar.upcoming_fires(entry, now, end))
    fires = [fire for entry in upcoming for fire in entry.fires]
    overlaps = calendar.find_overlaps(
        fires, {s: estimate.length for s, estimate in estimates.items()}
    )
    return Calendar(
        zone=zone_name,
        days=calendar.by_day(fires, dates, zone),
        overlaps=overlaps,
        overlap_of={(o.second.schedule_id, o.second.at): o for o in overlaps},
        upcoming=upcoming,
        estimates=estimates,
        zone_error=zone_error,
    )


@router.get("/schedules")
async def schedules_page(
    request: Request,
    context: CanAutomate,
    session: SessionDep,
    schedules: Schedules,
    runs: Runs,
    zone: str = "",
) -> Response:
    """Every schedule of the organization and the fires of the next 30 days."""
    org_id = context.org.org_id
    rows, more = await schedule_settings.list_schedules(
        session, org_id, PageParams(limit=MAX_LIMIT)
    )
    details = _ordered([schedule_detail(*row) for row in rows])
    pausers = {s.paused_by for s in details if s.paused_by is not None}
    emails = await user_service.emails_of(session, pausers)
    listed = []
    for position, schedule in enumerate(details):
        fires, _ = await schedules.history(
            session, org_id=org_id, page=PageParams(limit=1), schedule_id=schedule.id
        )
        listed.append(
            Listed(
                schedule,
                schedule_settings.jitter_offset(schedule.id, schedule.jitter_seconds),
                FireResponse.model_validate(fires[0]) if fires else None,
                emails.get(schedule.paused_by) if schedule.paused_by else None,
                position % COLORS,
            )
        )
    recent_runs = await runs.recent_run_lengths(session, org_id=org_id)
    strip = _calendar(listed, recent_runs, schedules.clock(), zone.strip()[:64])
    return render(
        request,
        "schedules/list.html",
        nav="schedules",
        listed=listed,
        names={item.schedule.id: item.schedule.name for item in listed},
        truncated=more is not None,
        calendar=strip,
        policies=POLICIES,
        chips_per_day=CHIPS_PER_DAY,
        default_run_length=calendar.DEFAULT_RUN_LENGTH,
        days=calendar.DAYS,
        fires_shown=calendar.FIRES_SHOWN,
        time_zones=time_zones(),
    )


def _back(next_page: str, schedule_id: uuid.UUID) -> str:
    """Where a button of a schedule returns to: the page it was on (list or form)."""
    return safe_next(next_page, f"/schedules/{schedule_id}")


@router.post("/schedules/{schedule_id}/pause")
async def pause_schedule(
    request: Request,
    schedule_id: str,
    context: CanAutomate,
    session: SessionDep,
    schedules: Schedules,
    commands: ScheduleCommandsDep,
    paused_note: Annotated[str, Form()] = "",
) -> Response:
    """Pause a schedule saying why (PATCH … {"enabled": false, "paused_note": …}); who and
    when are recorded. A paused schedule's note is changed the same way."""
    schedule = await load(session, context, schedule_id)
    try:
        note = TypeAdapter(PauseNote).validate_python(paused_note)
    except ValidationError as exc:
        message = field_errors(exc).popitem()[1]
        if message == "fill in this field":
            message = "Say why you pause it: the other admins see this note in the list."
        values = {**values_of(schedule), "paused_note": paused_note}
        return await form_page(
            request,
            context,
            session,
            schedules,
            schedule=schedule,
            values=values,
            errors={"paused_note": message},
            status_code=status.HTTP_400_BAD_REQUEST,
        )
    try:
        saved = await commands.change(
            session,
            org_id=context.org.org_id,
            schedule_id=schedule.id,
            changes={"enabled": False, "paused_note": note},
            actor_id=context.org.user_id,
        )
    except AppError as exc:
        raise web_error(exc) from None
    response = RedirectResponse("/schedules", status_code=status.HTTP_303_SEE_OTHER)
    verb = "paused" if schedule.enabled else "note changed"
    return flash(response, request, f"Schedule {saved.name} {verb}: “{note}”.")


@router.post("/schedules/{schedule_id}/resume")
async def resume_schedule(
    request: Request,
    schedule_id: str,
    context: CanAutomate,
    session: SessionDep,
    commands: ScheduleCommandsDep,
    next_page: Annotated[str, Form(alias="next")] = "",
) -> Response:
    """Enable a paused schedule: it fires from its next due time on (none of those that
    passed while it was paused)."""
    schedule = await load(session, context, schedule_id)
    response = RedirectResponse(
        _back(next_page, schedule.id), status_code=status.HTTP_303_SEE_OTHER
    )
    try:
        saved = await commands.change(
            session,
            org_id=context.org.org_id,
            schedule_id=schedule.id,
            changes={"enabled": True},
            actor_id=context.org.user_id,
        )
    except AppError as exc:
        if not isinstance(exc, InvalidError):
            raise web_error(exc) from None
        field, _, reason = exc.message.partition(": ")
        if field == "preset_id":
            reason = "it has no preset (it was deleted): choose one on its page and save"
        elif field == "ends_at":
            reason = "its end (ends_at) has passed: move it later or clear it, and save"
        return flash(response, request, f"Not resumed: {reason or exc.message}.", error=True)
    return flash(response, request, saved_message(saved, "resumed"))


@router.post("/schedules/{schedule_id}/run-now")
async def run_schedule_now(
    request: Request,
    schedule_id: str,
    context: CanAutomate,
    session: SessionDep,
    commands: ScheduleCommandsDep,
) -> Response:
    """Run the schedule's preset now (POST …/trigger): logged in its history either way,
    not counted in its remaining runs."""
    schedule = await load(session, context, schedule_id)
    here = f"/schedules/{schedule.id}"
    response = RedirectResponse(here, status_code=status.HTTP_303_SEE_OTHER)
    try:
        fire = await commands.trigger(session, org_id=context.org.org_id, schedule_id=schedule.id)
    except AppError as exc:
        if isinstance(exc, NoPresetError):
            message = "Not started: the schedule has no preset (it was deleted): choose one."
        elif isinstance(exc, FireSkippedError):
            message = (
                "Not started: another run is active, and one collection runs at a time. The "
                "history below shows the skipped attempt with a link to the active run."
            )
        else:
            message = f"Not started: {exc.message}."
        return flash(response, request, message, error=True)
    if fire.run_id is not None:
        response = RedirectResponse(f"/runs/{fire.run_id}", status_code=status.HTTP_303_SEE_OTHER)
    return flash(response, request, f"Run started now from schedule {schedule.name}.")


@router.post("/schedules/{schedule_id}/delete")
async def delete_schedule(
    request: Request,
    schedule_id: str,
    context: CanAutomate,
    session: SessionDep,
    commands: ScheduleCommandsDep,
) -> Response:
    """Delete a schedule and its fire history; the runs it started stay."""
    schedule = await load(session, context, schedule_id)
    try:
        await commands.delete(session, org_id=context.org.org_id, schedule_id=schedule.id)
    except AppError as exc:
        raise web_error(exc) from None
    message = f"Schedule {schedule.name} deleted; the runs it started are kept."
    if schedule.is_default:
        successor, _ = await schedule_settings.default_schedule(session, context.org.org_id)
        if successor is not None:
            message += f" {successor.name} is the default schedule now."
    response = RedirectResponse("/schedules", status_code=status.HTTP_303_SEE_OTHER)
    return flash(response, request, message)
