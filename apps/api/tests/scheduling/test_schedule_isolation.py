"""One organization's bad data never holds up another's schedules, and work that keeps
failing backs off instead of spinning (the scheduler's passes, the run executor's loop,
schedules another replica holds).

Time is injected (FakeClock), and the back-off is read off the engine, never waited for.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app.core.config import Settings
from app.core.database import SYSTEM, Database, acting_as
from app.runs.executor import RunExecutor
from app.runs.notifications import Mailer
from app.scheduling.engine import FAILURE_BACKOFF_MAX, HELD_ELSEWHERE_RETRY, CollectionScheduler
from app.scheduling.schedules import FireResult, ScheduleService
from app.tables import CategoryPreset, CollectionSchedule
from tests.helpers.actors import Actors
from tests.helpers.scheduling import FakeClock, Org, cancel_all, enable, history, make_org, runs_of

REFUSED_CATEGORY = "90909090"
DUE = datetime(2027, 2, 1, tzinfo=UTC)


@asynccontextmanager
async def database_refuses_category(database: Database, category_id: str) -> AsyncIterator[None]:
    """Make the database itself refuse runs of one category, as bad data would on
    PostgreSQL (a value too long for its column): a CHECK constraint there, a trigger on
    SQLite, which cannot add constraints to a table."""
    if database.dialect == "postgresql":
        add = [
            "ALTER TABLE run_categories ADD CONSTRAINT ck_test_refused "
            f"CHECK (category_id <> '{category_id}') NOT VALID"
        ]
        drop = ["ALTER TABLE run_categories DROP CONSTRAINT ck_test_refused"]
    else:
        add = [
            "CREATE TRIGGER test_refused BEFORE INSERT ON run_categories "
            f"WHEN NEW.category_id = '{category_id}' "
            "BEGIN SELECT RAISE(ABORT, 'category refused for this test'); END"
        ]
        drop = ["DROP TRIGGER test_refused"]
    async with database.transaction() as session:
        for statement in add:
            await session.execute(sa.text(statement))
    try:
        yield
    finally:
        async with database.transaction() as session:
            for statement in drop:
                await session.execute(sa.text(statement))


async def schedule_of(client: httpx.AsyncClient, org: Org) -> dict[str, Any]:
    response = await client.get("/collection/schedule", headers=org.admin.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_fire_the_database_refuses_fails_alone_and_its_schedule_moves_on(
    client: httpx.AsyncClient,
    actors: Actors,
    clock: FakeClock,
    schedules: ScheduleService,
    database: Database,
) -> None:
    healthy = await make_org(client, actors, "Healthy")
    refused = await make_org(client, actors, "Refused", REFUSED_CATEGORY)
    await enable(client, healthy)
    await enable(client, refused)  # both due on the 1st at midnight, in one pass

    async with database_refuses_category(database, REFUSED_CATEGORY):
        clock.set(DUE + timedelta(seconds=1))
        results = {r.org_id: r for r in await schedules.fire_due()}
        assert await schedules.fire_due() == []  # each due time once, failed or not

        clock.set(DUE.replace(month=3) + timedelta(seconds=1))
        await cancel_all(client, healthy.admin)
        next_month = {r.org_id: r for r in await schedules.fire_due()}

    assert results[healthy.admin.org_id].outcome.value == "started"
    failed = results[refused.admin.org_id]
    assert failed.outcome.value == "failed"
    assert failed.run_id is None
    assert failed.detail is not None
    assert failed.detail.startswith("could not start the run: the database refused it (")
    assert "<class" not in failed.detail
    assert await runs_of(client, refused.admin) == []
    assert {run["id"] for run in await runs_of(client, healthy.admin)} == {
        str(results[healthy.admin.org_id].run_id),
        str(next_month[healthy.admin.org_id].run_id),
    }

    # the failure is in the refused org's history, once per due time, and it moved on
    entries = await history(client, refused.admin)
    assert [(e["scheduled_for"], e["outcome"]) for e in entries] == [
        ("2027-03-01T00:00:00Z", "failed"),
        ("2027-02-01T00:00:00Z", "failed"),
    ]
    assert next_month[refused.admin.org_id].outcome.value == "failed"
    assert next_month[healthy.admin.org_id].outcome.value == "started"
    body = await schedule_of(client, refused)
    assert body["last_outcome"] == "failed"
    assert body["next_run_at"] == "2027-04-01T00:00:00Z"


async def test_a_preset_saved_with_an_unusable_category_is_refused_everywhere_with_a_reason(
    client: httpx.AsyncClient,
    actors: Actors,
    clock: FakeClock,
    schedules: ScheduleService,
    database: Database,
) -> None:
    """A preset saved before category IDs were checked as integers (30 digits): on
    PostgreSQL its run overflowed a column, a 500 for a run by hand and a failed pass of
    every organization's schedules."""
    healthy = await make_org(client, actors, "Healthy")
    legacy = await make_org(client, actors, "Legacy")
    async with database.transaction() as session:
        await session.execute(
            sa.update(CategoryPreset)
            .where(CategoryPreset.org_id == legacy.admin.org_id)
            .values(category_ids=["1" * 30])
        )
    await enable(client, healthy)
    await enable(client, legacy)

    by_hand = await client.post(
        "/collection/runs", json={"preset_id": legacy.preset_id}, headers=legacy.admin.headers
    )
    assert by_hand.status_code == 409, by_hand.text
    assert "cannot be run: its category ID 1 ('111" in by_hand.json()["detail"]
    assert "at most 20 digits, got 30 digits" in by_hand.json()["detail"]
    assert "Edit the preset" in by_hand.json()["detail"]

    triggered = await client.post("/collection/schedule/trigger", headers=legacy.admin.headers)
    assert triggered.status_code == 409, triggered.text
    assert triggered.json()["detail"].startswith("failed: the preset 'Electronics' cannot be run")

    clock.set(DUE + timedelta(seconds=1))
    results = {r.org_id: r for r in await schedules.fire_due()}
    assert results[healthy.admin.org_id].outcome.value == "started"
    assert results[legacy.admin.org_id].outcome.value == "failed"
    assert "at most 20 digits" in (results[legacy.admin.org_id].detail or "")
    assert await runs_of(client, legacy.admin) == []
    assert [e["outcome"] for e in await history(client, legacy.admin)] == ["failed", "failed"]
    assert (await schedule_of(client, legacy))["next_run_at"] == "2027-03-01T00:00:00Z"


# --- back-off ----------------------------------------------------------------------------------


async def test_a_failing_scheduler_pass_backs_off_instead_of_spinning(
    client: httpx.AsyncClient,
    org: Org,
    app: FastAPI,
    settings: Settings,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await enable(client, org)
    clock.set(DUE + timedelta(seconds=5))  # due, and still due after a failed pass
    schedules: ScheduleService = app.state.instance.schedules
    real_fire_due = schedules.fire_due

    async def broken(**_options: Any) -> list[FireResult]:
        raise RuntimeError("the database went away\nsecond line of a long message")

    monkeypatch.setattr(schedules, "fire_due", broken)
    engine = CollectionScheduler(
        schedules, app.state.instance.executor, Mailer(settings), settings, clock=clock
    )
    poll = timedelta(seconds=settings.scheduler_poll_seconds)
    waits = []
    with caplog.at_level(logging.INFO, logger="app.scheduling.engine"):
        for _ in range(9):
            await engine.tick()
            assert engine._next_wake is not None
            waits.append(engine._next_wake - clock.now)
        failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(failures) == 9  # one line per failed pass
        assert failures[0].exc_info is not None  # the first with its traceback
        assert all(r.exc_info is None for r in failures[1:])
        assert "(9 passes in a row: RuntimeError: the database went away);" in (
            failures[-1].getMessage()
        )

        monkeypatch.setattr(schedules, "fire_due", real_fire_due)
        (result,) = await engine.tick()
    assert waits == [min(poll * 2**n, FAILURE_BACKOFF_MAX) for n in range(9)]
    assert waits[-1] == FAILURE_BACKOFF_MAX
    assert result.outcome.value == "started"
    assert engine._next_wake is not None
    assert engine._next_wake - clock.now <= poll
    assert "works again after 9 failed passes" in caplog.text


async def test_a_failing_executor_loop_backs_off_instead_of_spinning(
    app: FastAPI, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    executor = RunExecutor(app.state.instance.leases, app.state.instance.pipeline, settings)
    rounds = 0

    async def broken_heartbeat() -> None:
        nonlocal rounds
        rounds += 1
        raise RuntimeError("the database went away")

    waits: list[float] = []
    seven_waits = asyncio.Event()

    async def record_wait(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 7:
            seven_waits.set()
            await asyncio.Event().wait()  # the seventh wait lasts until the test ends
        executor.poke()  # a poke must not cut the back-off short

    executor.heartbeat = broken_heartbeat  # type: ignore[method-assign]
    executor._sleep = record_wait
    executor.poke()
    with caplog.at_level(logging.INFO, logger="app.runs.executor"):
        loop = asyncio.create_task(executor._loop())
        try:
            await asyncio.wait_for(seven_waits.wait(), timeout=10)
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
    beat, lease = executor.heartbeat_interval, executor.lease_seconds
    assert waits == [min(beat * 2**n, lease) for n in range(7)]  # 10, 20, 30, 30 s...
    assert waits[-1] == lease
    assert rounds == len(waits)  # every round waited its back-off: no spin
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == rounds
    assert errors[0].exc_info is not None
    assert errors[-1].exc_info is None
    assert "(7 rounds in a row: RuntimeError: the database went away)" in errors[-1].getMessage()


async def test_the_engine_logs_a_refused_fire_once_per_due_time_and_fires_the_rest_on_time(
    client: httpx.AsyncClient,
    actors: Actors,
    app: FastAPI,
    settings: Settings,
    clock: FakeClock,
    database: Database,
    caplog: pytest.LogCaptureFixture,
) -> None:
    healthy = await make_org(client, actors, "Healthy")
    refused = await make_org(client, actors, "Refused", REFUSED_CATEGORY)
    await enable(client, healthy)
    await enable(client, refused)
    engine = CollectionScheduler(
        app.state.instance.schedules,
        app.state.instance.executor,
        Mailer(settings),
        settings,
        clock=clock,
    )
    async with database_refuses_category(database, REFUSED_CATEGORY):
        clock.set(DUE + timedelta(milliseconds=300))
        with caplog.at_level(logging.INFO, logger="app.scheduling.engine"):
            fired = await engine.tick()
            for _ in range(3):  # the engine wakes again before the next due time
                assert await engine.tick() == []
        await engine.drain()
    assert engine._next_wake is not None
    assert engine._next_wake - clock.now <= timedelta(seconds=settings.scheduler_poll_seconds)
    assert {(r.org_id, r.outcome.value) for r in fired} == {
        (healthy.admin.org_id, "started"),
        (refused.admin.org_id, "failed"),
    }
    (started,) = [r for r in fired if r.outcome.value == "started"]
    assert started.fired_at - DUE == timedelta(milliseconds=300)  # on time, in the same pass
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "failed (could not start the run: the database refused it" in errors[0]


async def test_schedules_another_replica_holds_are_looked_at_again_soon_not_at_once(
    client: httpx.AsyncClient,
    actors: Actors,
    app: FastAPI,
    settings: Settings,
    clock: FakeClock,
    database: Database,
) -> None:
    if database.dialect != "postgresql":
        pytest.skip("replicas skip each other's locked schedules on PostgreSQL; SQLite has one")
    org = await make_org(client, actors)
    await enable(client, org)
    engine = CollectionScheduler(
        app.state.instance.schedules,
        app.state.instance.executor,
        Mailer(settings),
        settings,
        clock=clock,
    )
    clock.set(DUE + timedelta(milliseconds=200))
    with acting_as(SYSTEM):
        async with database.transaction() as other_replica:  # its pass holds the row
            await other_replica.execute(
                sa.select(CollectionSchedule.id)
                .where(CollectionSchedule.org_id == org.admin.org_id)
                .with_for_update()
            )
            assert await engine.tick() == []
            assert engine._next_wake == clock.now + HELD_ELSEWHERE_RETRY  # not clock.now
            await other_replica.rollback()  # that pass failed: the due time is still due
    (fired,) = await engine.tick()
    await engine.drain()
    assert (fired.org_id, fired.outcome.value, fired.scheduled_for) == (
        org.admin.org_id,
        "started",
        DUE,
    )
