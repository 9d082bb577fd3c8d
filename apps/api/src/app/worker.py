"""The process of `collection-api worker`: an instance whose role is `worker` (the schedule
engine and the run executor, no API), with a small HTTP server for its probes (/health,
/ready) and /metrics that keeps answering while the worker drains on SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from app import __version__
from app.api.routes import health
from app.core.config import Settings
from app.main import instance_lifespan

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def create_worker_app(settings: Settings) -> FastAPI:
    """The worker's HTTP face: /health, /ready and /metrics, and its instance's lifespan
    (an ASGI server that runs the lifespan, as tests do, runs the whole worker)."""
    registry = CollectorRegistry()
    app = FastAPI(
        title="Collection API worker",
        version=__version__,
        lifespan=instance_lifespan(settings, registry),
        openapi_url=None,
    )
    app.state.metrics_registry = registry
    app.include_router(health.router)
    return app


def listen(host: str, port: int) -> socket.socket:
    """The probes' listening socket (OSError when the address is taken or not local)."""
    return socket.create_server((host, port))


async def run_worker(settings: Settings, probes: socket.socket) -> None:
    """Run a worker until SIGTERM or SIGINT, then drain it (its probes answering
    `draining` meanwhile) and return."""
    app = create_worker_app(settings)
    config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False)
    server = _ProbeServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with _stopped_by(loop, stop):
        async with app.router.lifespan_context(app):
            serving = asyncio.create_task(server.serve(sockets=[probes]), name="probes")
            host, port = probes.getsockname()[:2]
            logger.info(
                "worker %s: probes on http://%s:%s/health", settings.instance_id, host, port
            )
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait((serving, stopped), return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if serving.done():  # the probe server failed: drain all the same
                logger.error("worker %s: the probe server stopped; draining", settings.instance_id)
        server.should_exit = True  # after the drain: the probes answered `draining` until now
        await serving


@contextlib.contextmanager
def _stopped_by(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> Iterator[None]:
    """Set `stop` on SIGTERM or SIGINT while the block runs."""

    def on_signal(number: int) -> None:
        name = signal.Signals(number).name
        if stop.is_set():
            logger.info("%s received again: already draining", name)
            return
        logger.info("%s received: draining", name)
        stop.set()

    for number in STOP_SIGNALS:
        loop.add_signal_handler(number, on_signal, number)
    try:
        yield
    finally:
        for number in STOP_SIGNALS:
            loop.remove_signal_handler(number)


class _ProbeServer(uvicorn.Server):
    """uvicorn, leaving the signals to the worker: its own handling would close the probes'
    socket at once, and re-raise the signal once stopped."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
