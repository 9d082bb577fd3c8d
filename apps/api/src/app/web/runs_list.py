"""The runs list: the organization's runs, newest first, filtered by preset, trigger, status
and date (the API's filters, `RunFilter`), refreshing while any run shown is active.

Dates are whole days in the reader's time zone (the one app.js records; UTC until it has):
"from" is the start of its day, "to" includes its day.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, TypeVar
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import Response

from app import presets as preset_service
from app.api.deps import Runs, SessionDep
from app.core.pagination import PageParams
from app.models import RunResponse
from app.runs import dashboard, pace
from app.runs.lifecycle import RunFilter
from app.tables import RunStatus, RunTrigger
from app.web.rendering import render, viewer_zone
from app.web.runs import is_active
from app.web.session import CanView

router = APIRouter(include_in_schema=False)

RUNS_PER_PAGE = 25
MAX_PRESETS = 200
"""Presets offered in the filter (an organization's latest)."""


@dataclass(slots=True)
class ListFilter:
    """The filter form as typed (`values`, sent back into the form and the links), what
    it means (`only`), and the message of each field that could not be read."""

    values: dict[str, str]
    only: RunFilter = field(default_factory=RunFilter)
    errors: dict[str, str] = field(default_factory=dict)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"enter a date as YYYY-MM-DD, such as 2026-12-07 (got {text!r})") from None


Choice = TypeVar("Choice", RunTrigger, RunStatus)


def _choice(
    kind: type[Choice], text: str | None, name: str, errors: dict[str, str]
) -> tuple[Choice, ...]:
    """`(kind(text),)`, none when nothing was chosen; an unknown value is explained."""
    if text is None:
        return ()
    try:
        return (kind(text),)
    except ValueError:
        valid = ", ".join(member.value for member in kind)
        errors[name] = f"choose a {name} from the list ({valid}), not {text!r}"
        return ()


def read_filter(values: dict[str, str], zone: str) -> ListFilter:
    """The filter of the list's query (`values`: preset_id, trigger, status, since, until)
    with days in `zone`; a value that cannot be read is left out and explained."""
    values = {name: value.strip() for name, value in values.items() if value.strip()}
    errors: dict[str, str] = {}
    preset_id = None
    if "preset_id" in values:
        try:
            preset_id = uuid.UUID(values["preset_id"])
        except ValueError:
            errors["preset_id"] = "choose a preset from the list"
    triggers = _choice(RunTrigger, values.get("trigger"), "trigger", errors)
    statuses = _choice(RunStatus, values.get("status"), "status", errors)
    bounds: dict[str, datetime] = {}
    for name, extra in (("since", 0), ("until", 1)):  # "to" includes its day
        if name in values:
            try:
                day = _day(values[name]) + timedelta(days=extra)
                bounds[name] = datetime.combine(day, time(), ZoneInfo(zone)).astimezone(UTC)
            except (ValueError, OverflowError) as exc:
                errors[name] = str(exc) if isinstance(exc, ValueError) else "enter a real date"
    if "since" in bounds and "until" in bounds and bounds["since"] >= bounds["until"]:
        errors["until"] = "the end date is before the start date"
        del bounds["until"]
    only = RunFilter(
        preset_id=preset_id,
        triggers=triggers,
        statuses=statuses,
        since=bounds.get("since"),
        until=bounds.get("until"),
    )
    return ListFilter(values, only, errors)


@router.get("/runs")
async def runs_page(
    request: Request,
    context: CanView,
    session: SessionDep,
    runs: Runs,
    preset_id: str = "",
    trigger: str = "",
    status_filter: Annotated[str, Query(alias="status")] = "",
    since: str = "",
    until: str = "",
    cursor: str | None = None,
    fragment: str = "",
) -> Response:
    """The organization's runs, newest first, filtered as asked, refreshing while any of
    them is active; unfiltered, headed by what each preset's latest run changed."""
    zone = viewer_zone(request) or "UTC"
    typed = {
        "preset_id": preset_id,
        "trigger": trigger,
        "status": status_filter,
        "since": since,
        "until": until,
    }
    chosen = read_filter(typed, zone)
    rows, next_cursor = await runs.list_runs(
        session,
        org_id=context.org.org_id,
        page=PageParams(cursor=cursor, limit=RUNS_PER_PAGE),
        only=chosen.only,
    )
    now = runs.clock()
    items = [RunResponse.model_validate(row) for row in rows]
    elapsed = {row.id: pace.elapsed(row, now) for row in rows}
    presets, _ = await preset_service.list_presets(
        session, org_id=context.org.org_id, page=PageParams(limit=MAX_PRESETS)
    )
    since_last = []  # the cards head the unfiltered list's first page
    if not fragment and cursor is None and not chosen.only.narrows:
        since_last = await dashboard.since_last_run(session, org_id=context.org.org_id)
    return render(
        request,
        "runs/_table.html" if fragment else "runs/list.html",
        status_code=status.HTTP_400_BAD_REQUEST if chosen.errors else status.HTTP_200_OK,
        nav="runs",
        runs=items,
        elapsed=elapsed,
        next_cursor=next_cursor,
        cursor=cursor,
        filters=chosen.values,
        filter_errors=chosen.errors,
        filtered=chosen.only.narrows,
        presets=presets,
        preset_names={preset.id: preset.name for preset in presets},
        statuses=list(RunStatus),
        triggers=list(RunTrigger),
        zone=zone,
        has_presets=bool(items) or bool(presets),
        live=any(is_active(run) for run in items),
        since_last=since_last,
    )
