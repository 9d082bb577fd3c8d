"""The live part of a run's page (status, progress, timing, buttons), streamed as the run
changes: each change (app.api.streams) is sent as that part already rendered (`event:
live`), so an open run page costs its replica no request, session or read of its own;
app.js swaps the part in, and refreshes the sellers table after it. GET /runs/{id}/live
answers the same part, for pages that cannot follow the stream (they poll it)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from fastapi.sse import EventSourceResponse, ServerSentEvent

from app import web_sessions
from app.api.deps import Runs, SessionDep
from app.api.streams import RETRY_MS, end_event, run_states
from app.auth import ROLE_PERMISSIONS
from app.core.database import SYSTEM, acting_as
from app.instance import instance_of
from app.models import RunResponse
from app.runs import pace
from app.web import run_changes
from app.web.rendering import render
from app.web.runs import allowed_actions, is_active, path_id, run_row
from app.web.session import SESSION_COOKIE, CanView, WebContext, session_policy, web_clock

router = APIRouter(include_in_schema=False)


@router.get("/runs/{run_id}/live")
async def run_live(
    request: Request, run_id: str, context: CanView, session: SessionDep, runs: Runs
) -> Response:
    """The live part of a run's page, polled while it runs (when its events cannot be
    streamed: app.web.run_events)."""
    row = await run_row(context, session, runs, path_id(run_id, "run"))
    now = runs.clock()
    timing = await pace.timing(session, row, now=now)
    return live_fragment(request, RunResponse.model_validate(row), timing, context, now)


def live_fragment(
    request: Request, run: RunResponse, timing: pace.Timing, context: WebContext, now: datetime
) -> Response:
    """The live part of a run's page: status, progress, timing and buttons."""
    return render(
        request,
        "runs/_live.html",
        run=run,
        timing=timing,
        estimate=None,  # on the page once, not in its live part
        now=now,
        actions=allowed_actions(run, context),
        run_again=context.can("collection.run") and run.status in run_changes.FINISHED,
        live=is_active(run),
    )


async def watched_run(run_id: str, context: CanView, request: Request) -> WebContext:
    """The acting organization, once the run is found in it (a 404 before the stream)."""
    instance = instance_of(request)
    async with instance.database.read() as session:
        await run_row(context, session, instance.runs, path_id(run_id, "run"))
    return context


@router.get("/runs/{run_id}/events", response_class=EventSourceResponse)
async def run_page_events(
    run_id: str, context: Annotated[WebContext, Depends(watched_run)], request: Request
) -> AsyncIterator[ServerSentEvent]:
    """The run's changes for its open page, while the reader's session lasts and their
    role in the organization lets them see it."""
    instance = instance_of(request)
    token = request.cookies.get(SESSION_COOKIE, "")
    org_id = context.org.org_id

    async def allowed() -> bool:
        try:
            with acting_as(SYSTEM):  # the session by its token, as the request read it
                async with instance.database.read() as session:
                    user = await web_sessions.signed_in(
                        session,
                        token=token,
                        now=web_clock(request),
                        policy=session_policy(instance.settings),
                    )
        except web_sessions.SessionEndedError:
            return False
        role = user.memberships.get(org_id)
        return role is not None and "collection.view" in ROLE_PERMISSIONS[role]

    retry: int | None = RETRY_MS
    async for state in run_states(instance.run_watch, org_id, uuid.UUID(run_id), allowed):
        if isinstance(state, str):
            yield end_event(state)
            continue
        page = live_fragment(request, state, _timing(state), context, instance.runs.clock())
        yield ServerSentEvent(event="live", raw_data=bytes(page.body).decode(), retry=retry)
        retry = None


def _timing(run: RunResponse) -> pace.Timing:
    """The run's timing as its answer carries it (elapsed time and estimate)."""
    eta = run.eta
    return pace.Timing(
        elapsed=None if run.elapsed_seconds is None else timedelta(seconds=run.elapsed_seconds),
        remaining=None
        if eta is None or eta.remaining_seconds is None
        else timedelta(seconds=eta.remaining_seconds),
        finishes_at=None if eta is None else eta.finishes_at,
        note="" if eta is None else eta.note,
    )
