"""`serve`'s HTTP server: uvicorn, telling the instance when its shutdown begins.

uvicorn waits for open connections before the application's shutdown, up to
`timeout_graceful_shutdown`; a run's event stream stays open as long as its run goes. So
when the signal to stop arrives, the streams are ended at once (app.runs.watch: without
`end`, so their readers reconnect, through the load balancer to another replica), and
the shutdown goes on with the requests in flight only.
"""

from __future__ import annotations

import asyncio
from types import FrameType

import uvicorn
from fastapi import FastAPI

from app.instance import Instance


class Server(uvicorn.Server):
    """uvicorn serving `app`, ending its event streams when told to stop."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Stop as uvicorn does, and end the streams (in the event loop: this runs in a
        signal handler)."""
        instance: Instance | None = getattr(self._app.state, "instance", None)
        if instance is not None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not serving yet, or any more
                pass
            else:
                loop.call_soon_threadsafe(instance.run_watch.close)
        super().handle_exit(sig, frame)
