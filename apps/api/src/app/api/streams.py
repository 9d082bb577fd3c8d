"""Server-Sent Events of a run's progress, shared by the API's stream and the run page's.

A stream sends `event: run` with the run as GET /collection/runs/{id} answers it (but for
`estimate`, null: what the run needs of the providers' budgets moves with every other
organization's calls, which are not this run's news), first at once and then each time
it changes (app.runs.watch), and ends with `event: end` whose data says why: `{"reason":
"ended"}` once the run completed, failed or was cancelled, `"deleted"` when it is gone,
`"access"` when the reader may no longer see it. Clients close on `end` (an EventSource
would otherwise reconnect). A stream that ends without `end` was cut (this replica shuts
down): its reader reconnects, to another replica.

A stream outlives the request that authorized it, so before sending it checks again, at
most every `RECHECK_SECONDS`, that its reader still may see the run: a revoked membership,
an ended web session or an expired token ends the stream within that time, and the
reconnection that follows is refused like any request.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Literal

from fastapi.sse import ServerSentEvent

from app.models import RunResponse
from app.runs.watch import ENDED, RunWatch

RECHECK_SECONDS = 5.0
RETRY_MS = 3_000
"""How long a browser waits before reconnecting a stream that broke."""

STREAM_DESCRIPTION = (
    "`text/event-stream`: `event: run` with the run (as GET /collection/runs/{id}, "
    "`estimate` aside), at "
    'once and at each change; then `event: end` with `{"reason": "ended" | "deleted" | '
    '"access"}` and the end of the stream. Comments (`:`) keep the connection alive.'
)


EndReason = Literal["ended", "deleted", "access"]


async def run_states(
    watch: RunWatch,
    org_id: uuid.UUID,
    run_id: uuid.UUID,
    allowed: Callable[[], Awaitable[bool]],
    *,
    recheck: float | None = None,
) -> AsyncIterator[RunResponse | EndReason]:
    """The states of the run for a reader whose access `allowed` tells (checked again every
    `recheck` seconds, RECHECK_SECONDS by default), then why they end."""
    recheck = RECHECK_SECONDS if recheck is None else recheck
    checked = time.monotonic()
    async for state in watch.follow(org_id, run_id):
        if time.monotonic() - checked >= recheck:
            if not await allowed():
                yield "access"
                return
            checked = time.monotonic()
        yield state
        if state.status in ENDED:
            yield "ended"
            return
    if not watch.closing:  # else the stream just ends: its reader reconnects elsewhere
        yield "deleted"


def end_event(reason: EndReason) -> ServerSentEvent:
    """The last event of a stream."""
    return ServerSentEvent(event="end", data={"reason": reason})
