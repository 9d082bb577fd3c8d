"""A run's progress as Server-Sent Events (app.api.streams): what `collection-api runs
watch` and scripts follow instead of polling GET /collection/runs/{id}."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent

from app.api.deps import CanView
from app.api.errors import AUTH_ERRORS
from app.api.streams import RETRY_MS, STREAM_DESCRIPTION, end_event, run_states
from app.auth import ROLE_PERMISSIONS, OrgContext, authenticate
from app.errors import AppError
from app.instance import instance_of

router = APIRouter(prefix="/collection", tags=["runs"])

PERMISSION = "collection.view"


async def watched_run(run_id: uuid.UUID, ctx: CanView, request: Request) -> OrgContext:
    """The acting organization, once the run is found in it: a dependency, so that a
    missing run is a 404 before the stream (and its 200) starts."""
    instance = instance_of(request)
    async with instance.database.read() as session:
        await instance.runs.get_run(session, org_id=ctx.org_id, run_id=run_id)
    return ctx


@router.get(
    "/runs/{run_id}/events",
    response_class=EventSourceResponse,
    responses={
        **AUTH_ERRORS,
        200: {"description": STREAM_DESCRIPTION},
        404: {"description": "No such run in the acting organization."},
    },
)
async def watch_run(
    run_id: uuid.UUID, ctx: Annotated[OrgContext, Depends(watched_run)], request: Request
) -> AsyncIterator[ServerSentEvent]:
    """The run's progress as it changes, until it ends: `event: run` with the run, at once
    and at each change (checkpoints, status), then `event: end`. One replica reads a
    watched run once a second (or at once when it changes there) for all its readers, so
    a stream costs a fraction of polling. Access is checked again every few seconds while
    events flow: a revoked membership or an expired token ends the stream."""
    instance = instance_of(request)
    token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()

    async def allowed() -> bool:
        try:
            principal = await authenticate(request, token)
        except AppError:
            return False
        role = principal.memberships.get(ctx.org_id)
        return role is not None and PERMISSION in ROLE_PERMISSIONS[role]

    retry: int | None = RETRY_MS
    async for state in run_states(instance.run_watch, ctx.org_id, run_id, allowed):
        if isinstance(state, str):
            yield end_event(state)
        else:
            yield ServerSentEvent(event="run", data=state, retry=retry)
            retry = None
