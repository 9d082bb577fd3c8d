"""Schedules firing: exactly once per due time with the skip rule while a run is active
(also across replicas and in batches), and the grace window after downtime.

Time is injected: a FakeClock replaces the services' clocks, so no test waits for a due
time to come around.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app.core.config import Settings
from app.core.database import Database
from app.runs.lifecycle import RunLifecycle
from app.scheduling.fires import purge_expired_fires
from app.scheduling.schedules import FireResult, ScheduleService
from app.tables import ScheduleFire
from tests.helpers.actors import Actors
from tests.helpers.scheduling import (
    EPOCH,
    FakeClock,
    Org,
    cancel_all,
    enable,
    history,
    make_org,
    patch,
    runs_of,
)
from tests.helpers.settings import make_settings

# --- firing ---------------------------------------------------------------------------------


async def test_fires_once_at_the_due_time_and_advances(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, schedules: ScheduleService
) -> None:
    await enable(client, org)
    clock.set(datetime(2027, 1, 31, 23, 59, 59, tzinfo=UTC))
    assert await schedules.fire_due() == []  # not yet

    clock.set(datetime(2027, 2, 1, 0, 0, 0, 250_000, tzinfo=UTC))
    (result,) = await schedules.fire_due()
    assert result.outcome.value == "started"
    assert result.scheduled_for == datetime(2027, 2, 1, tzinfo=UTC)
    assert await schedules.fire_due() == []  # never twice

    (run,) = await runs_of(client, org.admin)
    assert run["id"] == str(result.run_id)
    assert run["trigger"] == "schedule"
    assert run["created_by"] is None
    assert run["status"] in ("running", "completed")
    assert run["schedule_id"] is not None
    assert run["category_ids"] == ["172282"]

    body = (await client.get("/collection/schedule", headers=org.admin.headers)).json()
    assert body["last_run_at"] == "2027-02-01T00:00:00Z"
    assert body["last_outcome"] == "started"
    assert body["next_run_at"] == "2027-03-01T00:00:00Z"

    (entry,) = await history(client, org.admin)
    assert entry["scheduled_for"] == "2027-02-01T00:00:00Z"
    assert entry["outcome"] == "started"
    assert entry["run_id"] == run["id"]
    assert entry["manual"] is False


async def test_fire_while_a_run_is_active_is_skipped_and_logged(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, schedules: ScheduleService
) -> None:
    await enable(client, org)
    manual = await client.post(
        "/collection/runs", json={"category_ids": ["1"]}, headers=org.admin.headers
    )
    clock.set(datetime(2027, 2, 1, 0, 0, 1, tzinfo=UTC))
    (result,) = await schedules.fire_due()
    assert result.outcome.value == "skipped"
    assert str(result.run_id) == manual.json()["id"]
    assert [r["id"] for r in await runs_of(client, org.admin)] == [manual.json()["id"]]
    (entry,) = await history(client, org.admin)
    assert entry["outcome"] == "skipped"
    assert entry["run_id"] == manual.json()["id"]
    assert "pending" in entry["detail"]
    body = (await client.get("/collection/schedule", headers=org.admin.headers)).json()
    assert body["next_run_at"] == "2027-03-01T00:00:00Z"


async def test_manual_run_racing_a_fire_never_both_start(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, schedules: ScheduleService
) -> None:
    await enable(client, org, "0 * * * *")
    for hour in range(1, 7):
        await cancel_all(client, org.admin)
        clock.set(EPOCH + timedelta(hours=hour, seconds=1))
        manual, fired = await asyncio.gather(
            client.post(
                "/collection/runs", json={"category_ids": ["1"]}, headers=org.admin.headers
            ),
            schedules.fire_due(),
        )
        (result,) = fired
        started = [manual.status_code == 201, result.outcome.value == "started"]
        assert started.count(True) == 1, (manual.status_code, result)
        active = [
            r for r in await runs_of(client, org.admin) if r["status"] in ("pending", "running")
        ]
        assert len(active) <= 1


async def test_two_replicas_fire_each_due_time_exactly_once(
    client: httpx.AsyncClient,
    actors: Actors,
    clock: FakeClock,
    app: FastAPI,
    settings: Settings,
    database: Database,
) -> None:
    orgs = [await make_org(client, actors, f"Org {i}") for i in range(12)]
    for item in orgs:
        await enable(client, item, "*/5 * * * *")
    collection: RunLifecycle = app.state.instance.runs
    replicas = [
        ScheduleService(
            database,
            make_settings(**{**settings.model_dump(), "instance_id": f"replica-{i}"}),
            collection,
            clock=clock,
        )
        for i in range(3)
    ]
    for step in range(1, 4):
        for item in orgs:
            await cancel_all(client, item.admin)
        clock.set(EPOCH + timedelta(minutes=5 * step, seconds=2))
        outcomes = await asyncio.gather(*(replica.fire_due() for replica in replicas))
        fired = [result for results in outcomes for result in results]
        assert len(fired) == len(orgs)
        assert {r.outcome.value for r in fired} == {"started"}
    async with database.read() as session:
        rows = (
            await session.execute(
                sa.select(
                    ScheduleFire.schedule_id, ScheduleFire.scheduled_for, ScheduleFire.instance_id
                )
            )
        ).all()
    assert len(rows) == len(orgs) * 3
    assert len({(s, t) for s, t, _ in rows}) == len(rows)  # no duplicates
    scheduled_runs = 0
    for item in orgs:
        scheduled_runs += len(
            [r for r in await runs_of(client, item.admin) if r["trigger"] == "schedule"]
        )
    assert scheduled_runs == len(orgs) * 3


async def test_many_due_schedules_fire_in_batches(
    client: httpx.AsyncClient,
    actors: Actors,
    clock: FakeClock,
    schedules: ScheduleService,
    database: Database,
) -> None:
    orgs = [await make_org(client, actors, f"Org {i}") for i in range(7)]
    for item in orgs:
        await enable(client, item)
    saved, schedules.batch_size = schedules.batch_size, 3
    try:
        clock.set(datetime(2027, 2, 1, 0, 0, 1, tzinfo=UTC))
        results = await schedules.fire_due()
    finally:
        schedules.batch_size = saved
    assert len(results) == 7
    assert len({r.schedule_id for r in results}) == 7


async def test_a_failing_batch_keeps_the_follow_up_of_the_batches_before_it(
    client: httpx.AsyncClient,
    actors: Actors,
    clock: FakeClock,
    schedules: ScheduleService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for item in [await make_org(client, actors, f"Org {i}") for i in range(3)]:
        await enable(client, item)
    monkeypatch.setattr(schedules, "batch_size", 2)
    real_batch, calls = schedules._fire_batch, []

    async def second_batch_fails() -> tuple[int, list[FireResult]]:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the database went away")
        return await real_batch()

    monkeypatch.setattr(schedules, "_fire_batch", second_batch_fails)
    clock.set(datetime(2027, 2, 1, 0, 0, 1, tzinfo=UTC))
    handled: list[list[FireResult]] = []
    with pytest.raises(RuntimeError):
        await schedules.fire_due(on_batch=handled.append)
    assert [len(batch) for batch in handled] == [2]  # committed, so followed up at once
    (last,) = await schedules.fire_due()  # the next tick fires the rest
    assert last.schedule_id not in {result.schedule_id for result in handled[0]}


async def test_disabled_schedule_does_not_fire_and_reenabling_does_not_backfill(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, schedules: ScheduleService
) -> None:
    await enable(client, org)
    await patch(client, org.admin, enabled=False)
    clock.set(datetime(2027, 2, 1, 0, 0, 1, tzinfo=UTC))
    assert await schedules.fire_due() == []
    body = (await patch(client, org.admin, enabled=True)).json()
    assert body["next_run_at"] == "2027-03-01T00:00:00Z"
    assert await schedules.fire_due() == []


async def test_a_change_that_keeps_the_times_keeps_an_unclaimed_due_time(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, schedules: ScheduleService
) -> None:
    await enable(client, org)
    clock.set(datetime(2027, 2, 1, 0, 10, tzinfo=UTC))  # due at 00:00; no tick has run yet
    for change in ({"notify_email": True}, {}, {"cron_expression": "@monthly"}):
        body = (await patch(client, org.admin, **change)).json()
        assert body["next_run_at"] == "2027-02-01T00:00:00Z", change
    (result,) = await schedules.fire_due()
    assert (result.outcome.value, result.scheduled_for) == (
        "started",
        datetime(2027, 2, 1, tzinfo=UTC),
    )
    await cancel_all(client, org.admin)
    # a change of times starts from now: the next due time of the new expression
    body = (await patch(client, org.admin, cron_expression="30 0 * * *")).json()
    assert body["next_run_at"] == "2027-02-01T00:30:00Z"


async def test_a_tick_a_moment_late_is_no_misfire_even_without_grace(
    settings: Settings, app: FastAPI, client: httpx.AsyncClient, org: Org, clock: FakeClock
) -> None:
    service = ScheduleService(
        app.state.instance.database,
        make_settings(**{**settings.model_dump(), "schedule_misfire_grace_seconds": 0}),
        app.state.instance.runs,
    )
    service.clock = clock
    await enable(client, org)
    clock.set(datetime(2027, 2, 1, 0, 0, 0, 3000, tzinfo=UTC))  # the tick ran 3 ms late
    (result,) = await service.fire_due()
    assert result.outcome.value == "started"


# --- downtime: the grace window ------------------------------------------------------------


async def test_due_time_within_grace_fires_late_once(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, schedules: ScheduleService
) -> None:
    await enable(client, org)
    clock.set(datetime(2027, 2, 1, 0, 40, tzinfo=UTC))  # down for 40 min; grace is 60
    (result,) = await schedules.fire_due()
    assert result.outcome.value == "started"
    assert result.scheduled_for == datetime(2027, 2, 1, tzinfo=UTC)
    assert await schedules.fire_due() == []


async def test_due_time_older_than_grace_is_logged_missed(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, schedules: ScheduleService
) -> None:
    await enable(client, org)
    clock.set(datetime(2027, 2, 1, 3, 0, tzinfo=UTC))  # down for 3 hours
    (result,) = await schedules.fire_due()
    assert result.outcome.value == "missed"
    assert "SCHEDULE_MISFIRE_GRACE_SECONDS=3600" in (result.detail or "")
    assert await runs_of(client, org.admin) == []
    body = (await client.get("/collection/schedule", headers=org.admin.headers)).json()
    assert body["next_run_at"] == "2027-03-01T00:00:00Z"
    assert body["last_outcome"] == "missed"


async def test_several_missed_due_times_coalesce_into_one_fire(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, schedules: ScheduleService
) -> None:
    await enable(client, org, "0 * * * *")  # hourly; next due 13:00
    clock.set(datetime(2027, 1, 15, 16, 30, tzinfo=UTC))  # 13:00, 14:00, 15:00, 16:00 passed
    (result,) = await schedules.fire_due()
    assert result.outcome.value == "started"
    assert result.scheduled_for == datetime(2027, 1, 15, 16, 0, tzinfo=UTC)
    assert "coalesced 3 earlier missed due time(s)" in (result.detail or "")
    assert len(await runs_of(client, org.admin)) == 1
    body = (await client.get("/collection/schedule", headers=org.admin.headers)).json()
    assert body["next_run_at"] == "2027-01-15T17:00:00Z"


async def test_history_older_than_the_retention_is_purged_in_batches(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, schedules: ScheduleService
) -> None:
    await enable(client, org, "0 * * * *")  # hourly
    for hour in (13, 14, 15, 16, 17):  # a fire an hour; each run cancelled before the next
        clock.set(datetime(2027, 1, 15, hour, 0, 1, tzinfo=UTC))
        assert [r.outcome.value for r in await schedules.fire_due()] == ["started"]
        await cancel_all(client, org.admin)
    deleted = await purge_expired_fires(
        schedules.database,
        now=datetime(2027, 1, 15, 17, 30, tzinfo=UTC),
        retention=timedelta(hours=2),
        batch_size=2,
    )
    assert deleted == 3  # fired at 13:00, 14:00 and 15:00, in two batches
    entries = await history(client, org.admin)
    assert [e["scheduled_for"] for e in entries] == ["2027-01-15T17:00:00Z", "2027-01-15T16:00:00Z"]
    clock.set(datetime(2027, 1, 15, 18, 0, 1, tzinfo=UTC))  # and firing goes on as before
    assert [r.outcome.value for r in await schedules.fire_due()] == ["started"]
