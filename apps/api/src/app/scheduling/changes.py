"""How every replica's schedule engine learns at once that a schedule changed: on PostgreSQL
the transaction that changes one notifies a channel (`announce_change`) that every engine
listens on (`ChangeListener`); the notification arrives when that transaction commits, and
not at all when it rolls back. Without it (SQLite, or while the listening connection is
lost) an engine looks again every SCHEDULER_POLL_SECONDS, and the instance that made the
change wakes its own engine at once anyway."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.database import Database
from app.core.observability import exception_line

logger = logging.getLogger(__name__)

CHANNEL = "collection_schedules"


async def announce_change(session: AsyncSession) -> None:
    """Have every engine look at the schedules again once `session` commits (PostgreSQL)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(sa.select(sa.func.pg_notify(CHANNEL, "")))


class ChangeListener:
    """Listens on CHANNEL over one connection of `database` (PostgreSQL), calling
    `on_change` for each notification, and once more after (re)connecting, since changes
    made while it was away were not heard. A lost connection is opened again after
    `retry` seconds; meanwhile the engine's poll still sees every change."""

    def __init__(self, database: Database, on_change: Callable[[], None], retry: float) -> None:
        self.database = database
        self.on_change = on_change
        self.retry = retry
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Listen from now on, in a task of the running loop; nothing on SQLite."""
        if self.database.dialect == "postgresql":
            self._task = asyncio.get_running_loop().create_task(self._listen(), name=CHANNEL)

    async def stop(self) -> None:
        """Stop listening and give the connection back."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _listen(self) -> None:
        quiet = False  # a failure to connect is logged once, until listening works again
        while True:
            try:
                await self._listen_once()
                logger.warning("lost the connection listening for schedule changes; polling")
                quiet = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not quiet:
                    logger.warning(
                        "cannot listen for schedule changes (%s); polling meanwhile",
                        exception_line(exc),
                    )
                quiet = True
            await asyncio.sleep(self.retry)

    async def _listen_once(self) -> None:
        """Listen until the connection is lost (or the task is cancelled)."""
        lost = asyncio.Event()

        def notified(*_args: Any) -> None:
            self.on_change()

        def terminated(*_args: Any) -> None:
            lost.set()

        async with self.database.engine.connect() as connection:
            raw = (await connection.get_raw_connection()).driver_connection
            assert raw is not None  # an open pooled connection has its driver's
            raw.add_termination_listener(terminated)
            await raw.add_listener(CHANNEL, notified)
            try:
                self.on_change()  # whatever changed before we listened
                await lost.wait()
            finally:
                raw.remove_termination_listener(terminated)
                if not raw.is_closed():
                    await asyncio.shield(raw.remove_listener(CHANNEL, notified))
