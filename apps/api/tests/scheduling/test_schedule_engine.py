"""The APScheduler engine that fires the schedules: a lone schedule within a second of its
due time, a tick in flight finishing at shutdown, changes picked up without a restart (on PostgreSQL
at once, from any replica), and, on an event loop of its own, fires on time while the main
loop is busy.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.core.config import Settings
from app.core.database import Database
from app.runs.lifecycle import RunLifecycle
from app.scheduling.schedules import FireResult, ScheduleService
from tests.helpers.scheduling import (
    FakeClock,
    Org,
    enable,
    history,
    make_engine,
)
from tests.helpers.settings import make_settings

# --- the APScheduler engine -----------------------------------------------------------------


class RealTimeClock(FakeClock):
    """A fake clock that stands at a chosen start while the test sets things up, then,
    from `run()` on, moves with real time (so a slow machine's set-up cannot carry it past
    a due time before the engine runs)."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self._offset: timedelta | None = None

    def run(self) -> None:
        self._offset = self.now - datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now if self._offset is None else datetime.now(UTC) + self._offset


async def fired_soon(client: httpx.AsyncClient, org: Org, within: float) -> list[dict[str, Any]]:
    """The organization's fire log once it has a fire, or empty after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not (fires := await history(client, org.admin)):
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.02)
    return fires


async def test_engine_fires_a_lone_schedule_within_a_second(
    client: httpx.AsyncClient, org: Org, app: FastAPI, settings: Settings
) -> None:
    due = datetime(2027, 2, 1, tzinfo=UTC)
    live = RealTimeClock(due - timedelta(seconds=0.4))
    schedules: ScheduleService = app.state.instance.schedules
    collection: RunLifecycle = app.state.instance.runs
    saved = schedules.clock, collection.clock
    schedules.clock = collection.clock = live
    engine = make_engine(app, settings, live)
    try:
        await enable(client, org)
        live.run()
        engine.start()
        fires = await fired_soon(client, org, within=2)
    finally:
        await engine.shutdown()
        await engine.drain()
        schedules.clock, collection.clock = saved
    (fire,) = fires
    delay = datetime.fromisoformat(fire["fired_at"]) - due
    assert timedelta(0) <= delay < timedelta(seconds=1)


async def test_shutdown_lets_a_tick_in_flight_finish(
    app: FastAPI,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """APScheduler cancels the jobs still running when it shuts down (and logs each as a
    failure); stopping the engine waits for its tick instead."""
    schedules: ScheduleService = app.state.instance.schedules
    entered, release = asyncio.Event(), asyncio.Event()
    finished: list[bool] = []

    async def slow_fire_due(**_options: Any) -> list[FireResult]:
        entered.set()
        await release.wait()
        finished.append(True)
        return []

    async def due_now() -> datetime:
        return datetime(2027, 2, 1, tzinfo=UTC)

    monkeypatch.setattr(schedules, "next_due", due_now)  # something is due: the tick fires
    monkeypatch.setattr(schedules, "fire_due", slow_fire_due)
    engine = make_engine(app, settings, FakeClock(datetime(2027, 2, 1, tzinfo=UTC)))
    engine.start()  # ticks at once: whatever is due after downtime
    await asyncio.wait_for(entered.wait(), timeout=5)
    stopping = asyncio.create_task(engine.shutdown())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # waiting for the tick, not cancelling it
    release.set()
    await asyncio.wait_for(stopping, timeout=5)
    await engine.drain()
    assert finished == [True]
    assert not engine.running
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_wake_up_with_nothing_due_takes_no_write_transaction(
    client: httpx.AsyncClient,
    org: Org,
    app: FastAPI,
    settings: Settings,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    schedules: ScheduleService = app.state.instance.schedules
    passes: list[datetime] = []
    fire_due = schedules.fire_due

    async def counted(**options: Any) -> list[FireResult]:
        passes.append(clock.now)
        return await fire_due(**options)

    monkeypatch.setattr(schedules, "fire_due", counted)
    await enable(client, org)  # due 2027-02-01 00:00
    clock.set(datetime(2027, 1, 31, 23, 59, 59, tzinfo=UTC))  # within a poll of it
    engine = make_engine(app, settings, clock)
    assert await engine.tick() == []  # a read only: nothing due yet (on SQLite, no lock)
    assert passes == []
    assert engine._next_wake == datetime(2027, 2, 1, tzinfo=UTC)
    clock.set(datetime(2027, 2, 1, tzinfo=UTC))
    (fired,) = await engine.tick()
    await engine.drain()
    assert passes == [clock.now]
    assert fired.outcome.value == "started"


@pytest.mark.parametrize("own_loop", [False, True], ids=["main loop", "own loop"])
async def test_engine_picks_up_a_change_without_restart(
    own_loop: bool, client: httpx.AsyncClient, org: Org, app: FastAPI, settings: Settings
) -> None:
    live = RealTimeClock(datetime(2027, 2, 1, 11, 59, 59, 500_000, tzinfo=UTC))
    schedules: ScheduleService = app.state.instance.schedules
    collection: RunLifecycle = app.state.instance.runs
    saved = schedules.clock, collection.clock
    schedules.clock = collection.clock = live
    engine = make_engine(app, settings, live, own_loop=own_loop)
    commands = app.state.instance.schedule_commands
    commands.engine, original = engine, commands.engine
    try:
        engine.start()
        await asyncio.sleep(0.05)
        await enable(client, org, "0 12 * * *")  # due half a second after `run()`
        live.run()
        fires = await fired_soon(client, org, within=2)
    finally:
        await engine.shutdown()
        await engine.drain()
        commands.engine = original
        schedules.clock, collection.clock = saved
    assert [f["scheduled_for"] for f in fires] == ["2027-02-01T12:00:00Z"]


async def test_an_engine_on_its_own_loop_fires_on_time_while_the_main_loop_is_blocked(
    client: httpx.AsyncClient,
    org: Org,
    app: FastAPI,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A service's engine times and writes its fires on a loop of its own: runs keeping the
    main loop busy (here: a second without a single turn) do not delay a fire; what follows
    the fire (its run, mail, metrics) happens on the main loop once it has a turn."""
    due = datetime(2027, 2, 1, tzinfo=UTC)
    live = RealTimeClock(due - timedelta(seconds=0.3))
    schedules: ScheduleService = app.state.instance.schedules
    collection: RunLifecycle = app.state.instance.runs
    saved = schedules.clock, collection.clock
    schedules.clock = collection.clock = live
    engine = make_engine(app, settings, live, own_loop=True)
    followed_up_on: list[threading.Thread] = []
    real_handle_fired = engine.handle_fired

    def handle_fired(results: list[FireResult]) -> None:
        followed_up_on.append(threading.current_thread())
        real_handle_fired(results)

    monkeypatch.setattr(engine, "handle_fired", handle_fired)
    try:
        await enable(client, org)
        live.run()
        engine.start()
        assert engine.firing is not schedules  # its own pool, on its own loop
        time.sleep(1.0)  # the main loop is blocked past the due time  # noqa: ASYNC251
        fires = await history(client, org.admin)
        for _ in range(100):
            if followed_up_on:
                break
            await asyncio.sleep(0.01)
    finally:
        await engine.shutdown()
        await engine.drain()
        schedules.clock, collection.clock = saved
    (fire,) = fires
    assert fire["outcome"] == "started"
    delay = datetime.fromisoformat(fire["fired_at"]) - due
    assert timedelta(0) <= delay < timedelta(seconds=0.3)  # not the second the loop was out
    assert followed_up_on == [threading.main_thread()]
    assert not engine.running
    assert engine.firing is schedules


async def test_on_postgresql_a_change_on_another_replica_wakes_the_engine_at_once(
    client: httpx.AsyncClient, org: Org, app: FastAPI, settings: Settings, database: Database
) -> None:
    """The change is saved through this app, whose own engine is not running: only the
    notification can wake the engine under test before its poll (5 s here)."""
    if database.dialect != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; on SQLite a replica polls")
    live = RealTimeClock(datetime(2027, 2, 1, 11, 59, 58, 500_000, tzinfo=UTC))
    schedules: ScheduleService = app.state.instance.schedules
    collection: RunLifecycle = app.state.instance.runs
    saved = schedules.clock, collection.clock
    schedules.clock = collection.clock = live
    slow_poll = make_settings(**{**settings.model_dump(), "scheduler_poll_seconds": 5})
    engine = make_engine(app, slow_poll, live, own_loop=True)
    try:
        live.run()
        engine.start()
        await asyncio.sleep(0.3)  # its first look found nothing: the next poll is 5 s away
        await enable(client, org, "0 12 * * *")  # due 1.2 s from now
        fires = await fired_soon(client, org, within=3)
    finally:
        await engine.shutdown()
        await engine.drain()
        schedules.clock, collection.clock = saved
    (fire,) = fires
    delay = datetime.fromisoformat(fire["fired_at"]) - datetime(2027, 2, 1, 12, tzinfo=UTC)
    assert timedelta(0) <= delay < timedelta(seconds=1)
