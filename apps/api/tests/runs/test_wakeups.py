"""Wake-ups between instances: an API-only instance executes none of the runs started
through it, and the instances that execute runs hear of them at once on PostgreSQL (by the
periodic sweep on SQLite); announcements of one moment share one notification; a listener
that loses its connection listens again."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app.core.config import Settings
from app.core.database import Database
from app.main import create_app
from app.runs.executor import RunExecutor
from app.runs.wakeups import CHANNEL, RECONNECT_SECONDS, RunWakeups
from app.tables import CollectionRun
from tests.helpers.actors import Actor
from tests.helpers.runs import create_run, finished, start, until, wait_for


class HeardWakeups(RunWakeups):
    """Wake-ups that count what the listener hears (its first wake-up included)."""

    def __init__(self, database: Database) -> None:
        super().__init__(database)
        self.heard = 0

    async def listen(self, wake: Callable[[], None]) -> None:
        def heard() -> None:
            self.heard += 1
            wake()

        await super().listen(heard)


@pytest.fixture
async def api_only(app: FastAPI, settings: Settings) -> AsyncIterator[FastAPI]:
    """A second instance on the same database whose role is `api`."""
    replica = create_app(
        settings.model_copy(update={"instance_role": "api", "instance_id": "api-host:1"})
    )
    async with replica.router.lifespan_context(replica):
        yield replica


@pytest.fixture
def busy_app(app: FastAPI) -> Iterator[None]:
    """The shared app's executor has no room: only the test's worker takes runs."""
    executor: RunExecutor = app.state.instance.executor
    capacity = executor.max_concurrent
    executor.max_concurrent = 0
    yield
    executor.max_concurrent = capacity


@pytest.mark.usefixtures("busy_app")
async def test_a_run_started_through_an_api_only_instance_is_executed_by_a_worker(
    admin: Actor,
    app: FastAPI,
    api_only: FastAPI,
    settings: Settings,
    database: Database,
    caplog: pytest.LogCaptureFixture,
) -> None:
    instance = app.state.instance
    # A worker that sweeps once an hour: on PostgreSQL only a wake-up can start the run soon.
    own = settings.model_copy(update={"instance_id": "worker-host:1", "run_sweep_seconds": 3600})
    wakeups = HeardWakeups(database)
    worker = RunExecutor(instance.leases, instance.pipeline, own, wakeups=wakeups)
    transport = httpx.ASGITransport(app=api_only)
    with caplog.at_level(logging.INFO, logger="app.runs.executor"):
        await worker.start()
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                if wakeups.enabled:
                    await until(lambda: wakeups.heard == 1)  # listening
                run = await create_run(client, admin, ["172282"])
                assert (await start(client, admin, run["id"])).status_code == 200
                assert api_only.state.instance.executor.running == []
                if wakeups.enabled:
                    await until(lambda: wakeups.heard == 2)  # the API-only instance told it
                else:  # SQLite: one process in production; here the worker's sweep finds it
                    async with database.read() as session:
                        owner = await session.scalar(
                            sa.select(CollectionRun.lease_owner).where(
                                CollectionRun.id == uuid.UUID(run["id"])
                            )
                        )
                    assert owner is None  # started, executed by nobody yet
                    await worker.sweep()
                done = await wait_for(client, admin, run["id"], finished)
        finally:
            await worker.drain(0)
    assert done["status"] == "completed"
    assert f"run {run['id']}: taken over by worker-host:1" in caplog.text


async def test_announcements_of_one_moment_share_one_notification(database: Database) -> None:
    wakeups = RunWakeups(database)
    for _ in range(50):
        wakeups.announce()
    assert len(wakeups._sending) == (1 if database.dialect == "postgresql" else 0)
    await wakeups.flush()
    assert not wakeups._sending


async def _listening_backends(database: Database) -> set[int]:
    async with database.read() as session:
        pids = await session.scalars(
            sa.select(sa.column("pid"))
            .select_from(sa.table("pg_stat_activity"))
            .where(sa.column("query") == f'LISTEN "{CHANNEL}"')
        )
        return set(pids)


async def test_a_listener_that_loses_its_connection_listens_again(database: Database) -> None:
    if database.dialect != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; on SQLite nobody listens")
    others = await _listening_backends(database)  # the shared app's listener
    listener, announcer = HeardWakeups(database), RunWakeups(database)
    reconnects: list[float] = []

    async def no_wait(seconds: float) -> None:
        reconnects.append(seconds)

    listener._sleep = no_wait
    woken = asyncio.Event()
    listening = asyncio.create_task(listener.listen(woken.set))
    try:
        await until(lambda: listener.heard == 1)
        (pid,) = await _listening_backends(database) - others
        async with database.transaction() as session:
            await session.execute(sa.select(sa.func.pg_terminate_backend(pid)))
        await until(lambda: listener.heard == 2)  # listening again: it woke, for what it missed
        assert reconnects == [RECONNECT_SECONDS]
        announcer.announce()
        await until(lambda: listener.heard == 3)
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        await announcer.flush()
