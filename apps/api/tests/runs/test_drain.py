"""Draining an instance on shutdown: its runs stop at their next checkpoint and their leases
are released, so another instance continues them at once and stores exactly the rows of an
uninterrupted run; a run that reaches no checkpoint within the drain timeout (an injected
clock) is stopped and released too; a draining or API-only instance claims nothing and
tells the others; a heartbeat tells a run that ended here from one that went elsewhere."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app.core.clock import utcnow
from app.core.config import Settings
from app.core.database import Database
from app.runs.executor import RunExecutor
from app.runs.pipeline import Pipeline
from app.runs.wakeups import RunWakeups
from app.tables import CollectionRun, RunStatus
from tests.helpers.actors import Actor
from tests.helpers.runs import (
    GatedEbay,
    create_run,
    created_at,
    expected_listings,
    finished,
    orphan,
    stored_listings,
    until,
    wait_for,
)

LEAVING = "leaving-host:1"
PRODUCTS = 20


class RecordingWakeups(RunWakeups):
    """Wake-ups that count the announcements instead of sending them."""

    def __init__(self, database: Database) -> None:
        super().__init__(database)
        self.announced = 0

    def announce(self) -> None:
        self.announced += 1


@pytest.fixture
def gated() -> GatedEbay:
    return GatedEbay()


def leaving_executor(
    app: FastAPI, settings: Settings, gated: GatedEbay, **updates: Any
) -> RunExecutor:
    """The executor of another instance (`LEAVING`, `settings` with `updates`) whose eBay
    searches wait for the test's permission."""
    instance = app.state.instance
    own = settings.model_copy(update={"instance_id": LEAVING, **updates})
    pipeline = Pipeline(instance.database, own, instance.leases, amazon=instance.amazon, ebay=gated)
    return RunExecutor(instance.leases, pipeline, own, wakeups=RecordingWakeups(instance.database))


@pytest.fixture
async def leaving(app: FastAPI, settings: Settings, gated: GatedEbay) -> AsyncIterator[RunExecutor]:
    """The executor of another instance about to shut down."""
    executor = leaving_executor(app, settings, gated)
    yield executor
    gated.allow(10_000)
    if not executor.draining:
        await executor.drain(0)


async def executing_on_leaving(
    client: httpx.AsyncClient, admin: Actor, database: Database, leaving: RunExecutor
) -> dict[str, str]:
    """A run of one category executed by `leaving`, its first eBay searches in flight."""
    run = await create_run(client, admin, ["172282"], products_per_category=PRODUCTS)
    await orphan(database, run["id"], owner=LEAVING, expired=False)  # nobody else takes it
    assert await leaving.submit(uuid.UUID(run["id"]))
    return run


async def lease_and_progress(database: Database, run_id: str) -> tuple[str, str | None, int]:
    async with database.read() as session:
        row = (
            await session.execute(
                sa.select(
                    CollectionRun.status, CollectionRun.lease_owner, CollectionRun.products_searched
                ).where(CollectionRun.id == uuid.UUID(run_id))
            )
        ).one()
    return row[0].value, row[1], row[2]


async def continued_elsewhere(
    app: FastAPI, client: httpx.AsyncClient, admin: Actor, database: Database, run: dict[str, str]
) -> None:
    """Another instance (the app's) takes the run over and completes it with exactly the
    rows of an uninterrupted run."""
    await app.state.instance.executor.sweep()
    done = await wait_for(client, admin, run["id"], finished)
    assert done["status"] == "completed", done
    assert done["progress"]["products_searched"] == PRODUCTS
    stored = await stored_listings(database, run["id"])
    assert len(stored) == len(set(stored))
    expected = await expected_listings(["172282"], PRODUCTS, 20, as_of=created_at(run))
    assert set(stored) == expected


async def test_a_drained_run_stops_at_its_next_checkpoint_and_another_instance_continues_it(
    client: httpx.AsyncClient,
    admin: Actor,
    app: FastAPI,
    database: Database,
    leaving: RunExecutor,
    gated: GatedEbay,
    caplog: pytest.LogCaptureFixture,
) -> None:
    in_flight = leaving.pipeline.concurrency
    run = await executing_on_leaving(client, admin, database, leaving)
    await until(lambda: gated.calls == in_flight)
    gated.allow(3)  # three searches checkpointed, three more start
    await until(lambda: gated.calls == in_flight + 3)

    with caplog.at_level(logging.INFO, logger="app.runs.executor"):
        draining = asyncio.create_task(leaving.drain(30))
        await until(lambda: leaving.draining)
        assert (await lease_and_progress(database, run["id"]))[1] == LEAVING  # still its own
        gated.allow(in_flight)  # the calls in flight finish and are checkpointed
        await draining

    assert gated.calls == in_flight + 3  # no search started once draining began
    assert leaving.running == []
    assert await lease_and_progress(database, run["id"]) == ("running", None, in_flight + 3)
    assert "draining: 1 run released to other instances (1 at a checkpoint)" in caplog.text
    assert f"run {run['id']}: stopped at a checkpoint, for another instance" in caplog.text
    await continued_elsewhere(app, client, admin, database, run)


async def test_a_run_with_no_checkpoint_within_the_drain_timeout_is_stopped_and_released(
    client: httpx.AsyncClient,
    admin: Actor,
    app: FastAPI,
    database: Database,
    leaving: RunExecutor,
    gated: GatedEbay,
    caplog: pytest.LogCaptureFixture,
) -> None:
    waited: list[float] = []
    timeout_passed = asyncio.Event()

    async def clock_sleep(seconds: float) -> None:
        waited.append(seconds)
        await timeout_passed.wait()

    leaving._sleep = clock_sleep
    run = await executing_on_leaving(client, admin, database, leaving)
    await until(lambda: gated.calls == leaving.pipeline.concurrency)  # and none may finish

    with caplog.at_level(logging.INFO, logger="app.runs.executor"):
        draining = asyncio.create_task(leaving.drain(20))
        await until(lambda: waited == [20])
        await asyncio.sleep(0.05)
        assert not draining.done()  # waiting for the checkpoint, as long as the timeout
        timeout_passed.set()  # ... the 20 s have passed
        await draining

    assert leaving.running == []
    assert await lease_and_progress(database, run["id"]) == ("running", None, 0)
    assert (
        "draining: 1 run released to other instances (1 stopped by the 20 s drain timeout "
        "before a checkpoint, its provider calls in flight lost)"
    ) in caplog.text
    await continued_elsewhere(app, client, admin, database, run)


async def test_a_draining_instance_heartbeats_at_its_pace_and_does_not_spin(
    client: httpx.AsyncClient,
    admin: Actor,
    app: FastAPI,
    settings: Settings,
    database: Database,
    gated: GatedEbay,
) -> None:
    # Sweeps every 0.1 s, heartbeats every 10 s: while a drain waits for a run's checkpoint,
    # the loop must wait too, not heartbeat (a write) as fast as it can.
    executor = leaving_executor(app, settings, gated, run_sweep_seconds=0.1, run_lease_seconds=30.0)
    beats = 0
    heartbeat = executor.heartbeat

    async def counted() -> None:
        nonlocal beats
        beats += 1
        await heartbeat()

    executor.heartbeat = counted  # type: ignore[method-assign]
    draining: asyncio.Task[None] | None = None
    await executor.start()
    try:
        run = await create_run(client, admin, ["172282"], products_per_category=PRODUCTS)
        await orphan(database, run["id"], owner=LEAVING, expired=False)
        assert await executor.submit(uuid.UUID(run["id"]))
        await until(lambda: gated.calls == executor.pipeline.concurrency)  # none may finish
        draining = asyncio.create_task(executor.drain(30))
        await until(lambda: executor.draining)
        await asyncio.sleep(0.5)  # five sweep periods
        assert not draining.done()
        assert beats <= 7, f"{beats} heartbeats in 0.5 s"
    finally:
        gated.allow(10_000)
        await (draining or executor.drain(0))
    assert executor.running == []


async def test_a_draining_instance_claims_nothing_and_leaves_runs_to_the_others(
    client: httpx.AsyncClient,
    admin: Actor,
    database: Database,
    leaving: RunExecutor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="app.runs.executor"):
        await leaving.drain(30)
    assert "draining: no runs to hand over" in caplog.text
    run = await create_run(client, admin, ["172282"])
    await orphan(database, run["id"], owner=LEAVING, expired=False)
    wakeups = leaving.wakeups
    assert isinstance(wakeups, RecordingWakeups)
    before = wakeups.announced

    assert not await leaving.submit(uuid.UUID(run["id"]))
    assert leaving.running == []
    assert wakeups.announced == before + 1  # the others are told to take it
    leaving.poke()  # a freed slot, a resumed run: the others look, not this instance
    assert wakeups.announced == before + 2


async def test_an_api_only_instance_executes_nothing_and_tells_the_instances_that_do(
    client: httpx.AsyncClient,
    admin: Actor,
    app: FastAPI,
    settings: Settings,
    database: Database,
) -> None:
    instance = app.state.instance
    api_only = settings.model_copy(update={"instance_role": "api", "instance_id": "api-host:1"})
    wakeups = RecordingWakeups(database)
    executor = RunExecutor(instance.leases, instance.pipeline, api_only, wakeups=wakeups)
    run = await create_run(client, admin, ["172282"])
    await orphan(database, run["id"], owner="dead-host:1", expired=True)  # free to take

    assert not executor.accepting
    assert not await executor.submit(uuid.UUID(run["id"]))
    assert wakeups.announced == 1
    assert await lease_and_progress(database, run["id"]) == ("running", "dead-host:1", 0)


async def test_a_run_waiting_for_quota_is_handed_over_at_once_and_keeps_its_wait(
    client: httpx.AsyncClient,
    admin: Actor,
    database: Database,
    leaving: RunExecutor,
    gated: GatedEbay,
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = await create_run(client, admin, ["172282"])
    await orphan(database, run["id"], owner=LEAVING, expired=False)
    resumes_at = (utcnow() + timedelta(hours=1)).replace(microsecond=0)
    async with database.transaction() as session:
        await session.execute(
            sa.update(CollectionRun)
            .where(CollectionRun.id == uuid.UUID(run["id"]))
            .values(resumes_at=resumes_at, waiting_for="eBay daily call limit")
        )
    assert await leaving.submit(uuid.UUID(run["id"]))

    with caplog.at_level(logging.INFO, logger="app.runs.executor"):
        await leaving.drain(30)  # an hour's wait is no checkpoint to wait for

    assert gated.calls == 0
    assert await lease_and_progress(database, run["id"]) == ("running", None, 0)
    async with database.read() as session:
        kept = await session.scalar(
            sa.select(CollectionRun.resumes_at).where(CollectionRun.id == uuid.UUID(run["id"]))
        )
    assert kept == resumes_at  # whoever continues waits out the rest
    assert "draining: 1 run released to other instances (1 at a checkpoint)" in caplog.text


async def test_a_run_that_ended_while_its_lease_was_renewed_is_not_taken_for_a_lost_one(
    client: httpx.AsyncClient,
    admin: Actor,
    database: Database,
    leaving: RunExecutor,
    gated: GatedEbay,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its finish hooks (mail) run after the final status is committed: a heartbeat that
    finds no lease then must leave the task alone, unlike one whose run went elsewhere."""
    run = await executing_on_leaving(client, admin, database, leaving)
    await until(lambda: gated.calls == leaving.pipeline.concurrency)
    task = leaving._tasks[uuid.UUID(run["id"])]
    async with database.transaction() as session:  # as the run's final write leaves it
        await session.execute(
            sa.update(CollectionRun)
            .where(CollectionRun.id == uuid.UUID(run["id"]))
            .values(status=RunStatus.COMPLETED, lease_owner=None, lease_expires_at=None)
        )
    with caplog.at_level(logging.WARNING, logger="app.runs.executor"):
        await leaving.heartbeat()
    assert task.cancelling() == 0
    assert "lease lost; stopping here" not in caplog.text

    async with database.transaction() as session:  # now as if another instance held it
        await session.execute(
            sa.update(CollectionRun)
            .where(CollectionRun.id == uuid.UUID(run["id"]))
            .values(status=RunStatus.RUNNING, lease_owner="other-host:1")
        )
    with caplog.at_level(logging.WARNING, logger="app.runs.executor"):
        await leaving.heartbeat()
    assert task.cancelling() == 1
    assert f"run {run['id']}: lease lost; stopping here" in caplog.text
