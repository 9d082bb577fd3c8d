"""Firing in batches: exactly once across replicas that fire small batches at the same time,
nothing of a batch that fails or is cancelled midway (the next pass fires it, once), a due
time already in the fire log left out while the rest of its batch fires, and one batch of
schedules with different timings planned each by its own.

Time is injected (FakeClock); the replicas are ScheduleService instances over one database.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app.core.config import Settings
from app.core.database import Database
from app.scheduling.cron import parse
from app.scheduling.firing import FireWriter
from app.scheduling.schedules import FireResult, ScheduleService
from app.tables import CollectionRun, CollectionSchedule, RunTrigger, ScheduleFire
from tests.helpers.actors import Actors
from tests.helpers.scheduling import EPOCH, FakeClock, Org, cancel_all, enable, make_org
from tests.helpers.settings import make_settings

HOUR = timedelta(hours=1)
FEB_1 = datetime(2027, 2, 1, tzinfo=UTC)


async def add_schedules(
    client: httpx.AsyncClient, org: Org, count: int, **body: Any
) -> list[uuid.UUID]:
    """`count` schedules of the organization's preset, hourly and without jitter unless
    `body` says otherwise."""
    made = []
    for n in range(count):
        response = await client.post(
            "/collection/schedules",
            json={
                "name": f"Schedule {n}",
                "preset_id": org.preset_id,
                "cron_expression": "0 * * * *",
                "jitter_seconds": 0,
                **body,
            },
            headers=org.admin.headers,
        )
        assert response.status_code == 201, response.text
        made.append(uuid.UUID(response.json()["id"]))
    return made


async def fire_log(database: Database) -> list[Any]:
    async with database.read() as session:
        return list(
            await session.execute(
                sa.select(
                    ScheduleFire.schedule_id,
                    ScheduleFire.scheduled_for,
                    ScheduleFire.outcome,
                    ScheduleFire.run_id,
                    ScheduleFire.org_id,
                )
            )
        )


async def scheduled_runs(database: Database) -> list[Any]:
    async with database.read() as session:
        return list(
            await session.execute(
                sa.select(CollectionRun.id, CollectionRun.org_id).where(
                    CollectionRun.trigger == RunTrigger.SCHEDULE
                )
            )
        )


async def next_runs(database: Database) -> dict[uuid.UUID, datetime | None]:
    async with database.read() as session:
        rows = await session.execute(
            sa.select(CollectionSchedule.id, CollectionSchedule.next_run_at)
        )
        return dict(rows.all())


def replica(app: FastAPI, settings: Settings, clock: FakeClock, name: str) -> ScheduleService:
    """A schedule service as another replica would have it, firing 3 schedules a batch."""
    service = ScheduleService(
        app.state.instance.database,
        make_settings(**{**settings.model_dump(), "instance_id": name, "scheduler_batch_size": 3}),
        app.state.instance.runs,
        clock=clock,
    )
    return service


async def test_replicas_firing_small_batches_at_once_fire_each_due_time_exactly_once(
    client: httpx.AsyncClient,
    actors: Actors,
    clock: FakeClock,
    app: FastAPI,
    settings: Settings,
    database: Database,
) -> None:
    orgs = [await make_org(client, actors, f"Org {i}") for i in range(5)]
    for org in orgs:
        await add_schedules(client, org, 4)  # an organization's schedules span batches
    replicas = [replica(app, settings, clock, f"replica-{i}") for i in range(3)]
    for hour in (1, 2):
        for org in orgs:
            await cancel_all(client, org.admin)
        clock.set(EPOCH + hour * HOUR + timedelta(seconds=1))
        passes = await asyncio.gather(*(r.fire_due() for r in replicas))
        fired = [result for results in passes for result in results]
        assert len(fired) == 20
        assert len({result.schedule_id for result in fired}) == 20
        outcomes = Counter((result.org_id, result.outcome.value) for result in fired)
        for org in orgs:  # one run per organization, its other fires skipped
            assert outcomes[org.admin.org_id, "started"] == 1
            assert outcomes[org.admin.org_id, "skipped"] == 3

    log = await fire_log(database)
    assert len(log) == 40
    assert len({(row.schedule_id, row.scheduled_for) for row in log}) == 40  # no duplicate
    runs = await scheduled_runs(database)
    assert Counter(run.org_id for run in runs) == {org.admin.org_id: 2 for org in orgs}
    assert {run.id for run in runs} == {row.run_id for row in log if row.outcome == "started"}
    assert set((await next_runs(database)).values()) == {EPOCH + 3 * HOUR}


@pytest.mark.parametrize("crash", ["error", "cancelled"])
async def test_a_batch_that_breaks_off_midway_leaves_nothing_and_fires_once_later(
    crash: str,
    client: httpx.AsyncClient,
    actors: Actors,
    clock: FakeClock,
    app: FastAPI,
    settings: Settings,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    orgs = [await make_org(client, actors, f"Org {i}") for i in range(2)]
    for org in orgs:
        await add_schedules(client, org, 3)
    service = replica(app, settings, clock, "replica-0")  # 6 due: batches of 3, 3
    real_log, calls, stuck = FireWriter._log, [], asyncio.Event()

    async def breaks_in_second_batch(writer: FireWriter, *args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 2:  # the second batch's runs are written by now, its fires not yet
            if crash == "error":
                raise RuntimeError("the connection went away")
            stuck.set()
            await asyncio.Event().wait()  # until cancelled, as a process stopping now
        await real_log(writer, *args, **kwargs)

    monkeypatch.setattr(FireWriter, "_log", breaks_in_second_batch)
    clock.set(EPOCH + HOUR + timedelta(seconds=1))
    handled: list[list[FireResult]] = []
    firing = asyncio.create_task(service.fire_due(on_batch=handled.append))
    if crash == "error":
        with pytest.raises(RuntimeError):
            await firing
    else:
        await asyncio.wait_for(stuck.wait(), timeout=5)
        firing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await firing

    (first_batch,) = handled  # committed, so followed up at once
    assert len(first_batch) == 3
    log = await fire_log(database)
    assert {row.schedule_id for row in log} == {r.schedule_id for r in first_batch}
    runs = await scheduled_runs(database)
    assert {run.id for run in runs} == {
        r.run_id for r in first_batch if r.outcome.value == "started"
    }
    pending = {i for i, due in (await next_runs(database)).items() if due == EPOCH + HOUR}
    assert len(pending) == 3  # the broken batch's schedules were not advanced

    monkeypatch.setattr(FireWriter, "_log", real_log)
    rest = await service.fire_due()
    assert {result.schedule_id for result in rest} == pending
    log = await fire_log(database)
    assert len(log) == len({(row.schedule_id, row.scheduled_for) for row in log}) == 6
    runs = await scheduled_runs(database)
    assert Counter(run.org_id for run in runs) == {org.admin.org_id: 1 for org in orgs}
    assert {run.id for run in runs} == {row.run_id for row in log if row.outcome == "started"}
    assert set((await next_runs(database)).values()) == {EPOCH + 2 * HOUR}


async def test_a_due_time_already_in_the_log_is_left_out_and_its_batch_fires(
    client: httpx.AsyncClient,
    actors: Actors,
    clock: FakeClock,
    schedules: ScheduleService,
    database: Database,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A run by hand at the very instant of a due time holds that due time's key in the
    fire log: the scheduled fire of it is left out (no second run), its schedule moves on,
    and the other schedules of the batch fire as usual."""
    taken, other = [await make_org(client, actors, name) for name in ("Taken", "Other")]
    for org in (taken, other):
        await enable(client, org)  # both due on the 1st at midnight
    clock.set(FEB_1)
    triggered = await client.post("/collection/schedule/trigger", headers=taken.admin.headers)
    assert triggered.status_code == 201, triggered.text

    clock.set(FEB_1 + timedelta(seconds=1))
    with caplog.at_level(logging.INFO, logger="app.scheduling"):
        (fired,) = await schedules.fire_due()
    assert (fired.org_id, fired.outcome.value) == (other.admin.org_id, "started")
    assert "was fired elsewhere" in caplog.text
    log = await fire_log(database)
    assert Counter(row.org_id for row in log) == {taken.admin.org_id: 1, other.admin.org_id: 1}
    runs = await scheduled_runs(database)  # the run by hand, and the other's fire's
    assert Counter(run.org_id for run in runs) == {taken.admin.org_id: 1, other.admin.org_id: 1}
    body = (await client.get("/collection/schedule", headers=taken.admin.headers)).json()
    assert body["next_run_at"] == "2027-03-01T00:00:00Z"
    assert await schedules.fire_due() == []


async def test_one_batch_plans_each_timing_by_its_own(
    client: httpx.AsyncClient,
    org: Org,
    clock: FakeClock,
    schedules: ScheduleService,
    database: Database,
) -> None:
    """The cron arithmetic is shared by schedules of one timing only: in one batch, the
    same hourly cron in UTC and in India (on the half hour in UTC), and a jittered one,
    each get their own next due time."""
    (utc,) = await add_schedules(client, org, 1)
    (india,) = await add_schedules(client, org, 1, timezone="Asia/Kolkata")
    (jittered,) = await add_schedules(client, org, 1, jitter_seconds=600)
    clock.set(EPOCH + HOUR + timedelta(minutes=11))  # every one of them due
    fired = await schedules.fire_due()
    assert {result.schedule_id for result in fired} == {utc, india, jittered}
    after = await next_runs(database)
    now = clock.now
    assert after[utc] == parse("0 * * * *").next_after(now) == EPOCH + 2 * HOUR
    assert after[india] == parse("0 * * * *", "Asia/Kolkata").next_after(now)
    assert after[india] == EPOCH + HOUR + timedelta(minutes=30)
    (offset,) = [result.jitter for result in fired if result.schedule_id == jittered]
    assert timedelta(0) < offset < timedelta(minutes=10)
    assert after[jittered] == EPOCH + 2 * HOUR + offset
