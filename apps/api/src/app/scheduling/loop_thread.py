"""An event loop in a thread of its own: where the schedule engine times and writes its fires
when it runs in a service, so that work on the main loop (runs executing their pipelines,
requests) never delays a fire by more than a switch of Python's interpreter lock."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """An asyncio event loop running in a daemon thread, started at once."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def call(self, function: Callable[[], T]) -> T:
        """Run `function` on the loop (where it may start tasks) and wait for its result."""
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(function())
            except BaseException as exc:  # handed to the caller, who raises it
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return done.result()

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the loop; await its result from the caller's loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self.loop))

    def call_soon(self, callback: Callable[[], object]) -> None:
        """Run `callback` on the loop soon; nothing when the loop has stopped."""
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(callback)

    async def stop(self) -> None:
        """Stop the loop and wait for its thread to end."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        await asyncio.to_thread(self._thread.join)
