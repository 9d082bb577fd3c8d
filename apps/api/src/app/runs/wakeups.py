"""Wake-ups between instances: an instance that leaves a run for others to execute tells
them to look now, rather than at their next sweep (RUN_SWEEP_SECONDS).

It does so when an API-only replica starts or resumes a run, when an instance has no
room for a run a schedule fired, and when a draining instance hands its runs over. On
PostgreSQL this is LISTEN/NOTIFY on one channel, and best effort: a notification nobody
hears is lost, and the periodic sweep still finds the run. On SQLite there is one process
and nobody to tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa

from app.core.database import Database
from app.core.observability import exception_line

logger = logging.getLogger(__name__)

CHANNEL = "collection_run_wakeups"
RECONNECT_SECONDS = 5.0
"""How long a listener whose connection failed waits before it listens again."""


class RunWakeups:
    """Announces runs left for other instances, and hears such announcements."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.enabled = database.dialect == "postgresql"
        self._queued = False
        self._sending: set[asyncio.Task[None]] = set()
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # tests replace it

    def announce(self) -> None:
        """Tell the instances that execute runs to sweep now; the calls of one moment (a
        batch of fires this instance has no room for) send one notification."""
        if not self.enabled or self._queued:
            return
        self._queued = True
        task = asyncio.get_running_loop().create_task(self._notify(), name="run-wakeup")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _notify(self) -> None:
        await asyncio.sleep(0)  # let the other calls of this moment join this notification
        self._queued = False
        try:
            async with self.database.transaction() as session:
                await session.execute(sa.select(sa.func.pg_notify(CHANNEL, "")))
        except Exception as exc:
            logger.warning(
                "could not tell the other instances about a run left to them (%s); "
                "they find it at their next sweep",
                exception_line(exc),
            )

    async def flush(self) -> None:
        """Wait until the announcements under way are sent (before the database closes)."""
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    async def listen(self, wake: Callable[[], None]) -> None:
        """Until cancelled: call `wake` when another instance announces a run, and once
        each time listening (re)starts, for what was announced meanwhile. A lost
        connection is opened again after RECONNECT_SECONDS."""
        if not self.enabled:
            return
        failures = 0
        while True:
            try:
                await self._listen(wake)
            except Exception as exc:
                failures += 1
                if failures == 1:  # one line while the database stays away, not one a round
                    logger.warning(
                        "not listening for runs left by other instances (%s); retrying every "
                        "%.0f s, the periodic sweep finds them meanwhile",
                        exception_line(exc),
                        RECONNECT_SECONDS,
                    )
            else:
                failures = 0
                logger.info("the connection listening for runs left by others was lost")
            await self._sleep(RECONNECT_SECONDS)

    async def _listen(self, wake: Callable[[], None]) -> None:
        """Listen on one pooled connection until it is lost."""
        async with self.database.engine.connect() as connection:
            raw = await connection.get_raw_connection()
            listener: Any = raw.driver_connection  # asyncpg's (it has no type hints)
            lost = asyncio.Event()

            def on_notification(*_: object) -> None:
                wake()

            def on_lost(*_: object) -> None:
                lost.set()

            listener.add_termination_listener(on_lost)
            await listener.add_listener(CHANNEL, on_notification)
            try:
                wake()
                await lost.wait()
            finally:
                listener.remove_termination_listener(on_lost)
                if not listener.is_closed():
                    # back to the pool without the subscription (also when cancelled)
                    with contextlib.suppress(Exception):
                        await listener.remove_listener(CHANNEL, on_notification)
