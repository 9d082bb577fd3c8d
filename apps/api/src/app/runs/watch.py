"""Run progress for those watching it: the run's state each time it changes, until it ends.

One process may stream a run to many readers (open run pages, `collection-api runs
watch`), and the run may execute on another replica or worker. So each process keeps one
**watcher per run** with readers: it reads the run (one primary-key read and its pace)
every `interval`, or at once when `poke` says this process changed it, and hands each
change to every reader. What a replica pays for progress is then one read per watched run
per interval, whatever the number of readers, where each reader polling the API paid a
whole authenticated request. A reader that falls behind gets only the latest state (its
queue holds one), so a slow connection never makes the watcher wait. The watcher stops
with its last reader, and after the run ends (the readers get the final state, then the
end of the stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from app.core.database import SYSTEM, Database, acting_as
from app.models import RunResponse
from app.runs import pace
from app.tables import CollectionRun, RunStatus

logger = logging.getLogger(__name__)

ENDED = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})
"""After these nothing about a run changes: its stream ends."""

INTERVAL_SECONDS = 1.0
"""How often a watcher reads its run when nothing pokes it (what the run pages polled)."""


@dataclass(eq=False)
class _Watcher:
    """The readers of one run in this process, and the task reading it for them."""

    org_id: uuid.UUID
    readers: set[asyncio.Queue[RunResponse | None]] = field(default_factory=set)
    latest: RunResponse | None = None
    ended: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


def _offer(reader: asyncio.Queue[RunResponse | None], state: RunResponse | None) -> None:
    """Give `state` to the reader, replacing one it has not taken yet."""
    with contextlib.suppress(asyncio.QueueEmpty):
        reader.get_nowait()
    reader.put_nowait(state)


def _changed(before: RunResponse | None, after: RunResponse) -> bool:
    """Whether readers should hear of `after`: anything changed, but the elapsed time of
    a run that is not running (the clock moving is news only while the run works)."""
    if before is None or after.status is RunStatus.RUNNING:
        return before != after
    return before.model_copy(update={"elapsed_seconds": after.elapsed_seconds}) != after


class RunWatch:
    """The watchers of this process, one per run being watched."""

    def __init__(
        self,
        database: Database,
        clock: Callable[[], datetime],
        *,
        interval: float = INTERVAL_SECONDS,
    ) -> None:
        self._database = database
        self._clock = clock
        self._interval = interval
        self._watchers: dict[tuple[uuid.UUID, uuid.UUID], _Watcher] = {}
        self.closing = False

    def close(self) -> None:
        """The process shuts down: every stream ends now, without the end of its run, so
        its reader reconnects (to another replica) instead of holding the shutdown up."""
        self.closing = True
        for watcher in self._watchers.values():
            for reader in watcher.readers:
                _offer(reader, None)

    def poke(self, run_id: uuid.UUID) -> None:
        """The run changed in this process: its watcher (if any) reads it now."""
        for (_, watched), watcher in self._watchers.items():
            if watched == run_id:
                watcher.wake.set()

    @property
    def watched(self) -> int:
        """Runs with at least one reader in this process."""
        return len(self._watchers)

    async def follow(self, org_id: uuid.UUID, run_id: uuid.UUID) -> AsyncIterator[RunResponse]:
        """The run's state now, then each time it changes, until it ends, is deleted or the
        process shuts down (`closing`). The caller has checked that the run is the
        organization's (a run of another is never read)."""
        if self.closing:
            return
        key = (org_id, run_id)
        reader: asyncio.Queue[RunResponse | None] = asyncio.Queue(maxsize=1)
        watcher = self._watchers.get(key)
        if watcher is None:
            watcher = self._watchers[key] = _Watcher(org_id)
            watcher.task = asyncio.create_task(self._watch(run_id, watcher), name=f"watch {run_id}")
        elif watcher.latest is not None or watcher.ended:
            _offer(reader, watcher.latest)
        watcher.readers.add(reader)
        try:
            while (state := await reader.get()) is not None:
                yield state
                if state.status in ENDED:
                    return
        finally:
            watcher.readers.discard(reader)
            if not watcher.readers and self._watchers.get(key) is watcher:
                del self._watchers[key]
                if watcher.task is not None:
                    watcher.task.cancel()

    async def _watch(self, run_id: uuid.UUID, watcher: _Watcher) -> None:
        """Read the run until it ends or is deleted, handing each change to the readers."""
        while not watcher.ended:
            try:
                state = await self._read(watcher.org_id, run_id)
            except Exception:
                logger.warning("could not read run %s for its watchers", run_id, exc_info=True)
            else:
                if state is None or _changed(watcher.latest, state):
                    watcher.latest = state
                    watcher.ended = state is None or state.status in ENDED
                    for reader in watcher.readers:
                        _offer(reader, state)
                    if watcher.ended:
                        return
            watcher.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watcher.wake.wait(), self._interval)

    async def _read(self, org_id: uuid.UUID, run_id: uuid.UUID) -> RunResponse | None:
        """The run as GET /collection/runs/{id} answers it; None when it is gone."""
        with acting_as(SYSTEM):
            async with self._database.read() as session:
                run = await session.scalar(
                    sa.select(CollectionRun).where(
                        CollectionRun.org_id == org_id, CollectionRun.id == run_id
                    )
                )
                if run is None:
                    return None
                return pace.timed(run, await pace.timing(session, run, now=self._clock()))
