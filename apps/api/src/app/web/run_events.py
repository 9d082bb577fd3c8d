"""A run's progress as Server-Sent Events for its page: each change of the run (app.api.
streams) as the page's live part already rendered (`event: live`, the HTML that GET
/runs/{id}/live answers), so an open run page costs its replica no request, session or
read of its own; app.js swaps the part in, and refreshes the sellers table after it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from fastapi.sse import EventSourceResponse, ServerSentEvent

from app import web_sessions
from app.api.streams import RETRY_MS, end_event, run_states
from app.auth import ROLE_PERMISSIONS
from app.errors import NotFoundError
from app.instance import instance_of
from app.models import RunResponse
from app.runs import pace
from app.web.errors import WebError
from app.web.runs import live_fragment
from app.web.session import SESSION_COOKIE, CanView, WebContext, session_policy, web_clock

router = APIRouter(include_in_schema=False)


async def watched_run(run_id: str, context: CanView, request: Request) -> WebContext:
    """The acting organization, once the run is found in it (a 404 before the stream)."""
    instance = instance_of(request)
    try:
        async with instance.database.read() as session:
            await instance.runs.get_run(
                session, org_id=context.org.org_id, run_id=uuid.UUID(run_id)
            )
    except (ValueError, NotFoundError):
        raise WebError(status.HTTP_404_NOT_FOUND, "This run is not in this organization.") from None
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
            user = await web_sessions.signed_in(
                instance.database,
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
        page = live_fragment(request, state, _timing(state), context)
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
