"""Overlap policies: what a fire does while its organization has an active run. `skip` logs
it; `buffer_one` queues one run that starts when the active one ends, exactly once;
`cancel_other` cancels the active run (its results stay) and starts this one instead."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from app.core.config import Settings
from app.core.database import Database
from app.runs.leases import Leases
from app.scheduling.schedules import ScheduleService
from tests.helpers.actors import Actor
from tests.helpers.scheduling import EPOCH, FakeClock, Org, cancel_all

HOUR = timedelta(hours=1)


async def hourly(client: httpx.AsyncClient, org: Org, policy: str) -> dict[str, Any]:
    response = await client.post(
        "/collection/schedules",
        json={
            "name": f"Hourly, {policy}",
            "preset_id": org.preset_id,
            "cron_expression": "0 * * * *",
            "jitter_seconds": 0,
            "overlap_policy": policy,
        },
        headers=org.admin.headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def manual_run(client: httpx.AsyncClient, org: Org) -> dict[str, Any]:
    """A pending run made by hand: the organization's active run."""
    response = await client.post(
        "/collection/runs", json={"preset_id": org.preset_id}, headers=org.admin.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def run(client: httpx.AsyncClient, actor: Actor, run_id: uuid.UUID | str) -> dict[str, Any]:
    response = await client.get(f"/collection/runs/{run_id}", headers=actor.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def left_queue(client: httpx.AsyncClient, actor: Actor, run_id: str) -> dict[str, Any]:
    """The run once it is no longer queued (the executor's sweep, poked when a run ends,
    starts it), within five seconds."""
    for _ in range(500):
        current = await run(client, actor, run_id)
        if current["status"] != "queued":
            return current
        await asyncio.sleep(0.01)
    raise AssertionError(f"run {run_id} stayed queued")


async def test_skip_logs_the_fire_with_the_active_run(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, schedules: ScheduleService
) -> None:
    await hourly(client, org, "skip")
    active = await manual_run(client, org)
    clock.set(EPOCH + HOUR)
    (result,) = await schedules.fire_due()
    assert (result.outcome.value, str(result.run_id)) == ("skipped", active["id"])
    assert result.detail == f"run {active['id']} was still pending"


async def test_buffer_one_queues_one_run_that_starts_when_the_active_one_ends(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, schedules: ScheduleService
) -> None:
    await hourly(client, org, "buffer_one")
    active = await manual_run(client, org)
    clock.set(EPOCH + HOUR)
    (queued,) = await schedules.fire_due()
    assert queued.outcome.value == "queued"
    assert queued.detail == f"waits for run {active['id']} to end"
    assert (await run(client, org.admin, queued.run_id or ""))["status"] == "queued"
    # a second fire while one is queued is skipped, saying so
    clock.set(EPOCH + 2 * HOUR)
    (second,) = await schedules.fire_due()
    assert second.outcome.value == "skipped"
    assert "a run of this schedule is queued already" in (second.detail or "")
    runs = (await client.get("/collection/runs", headers=org.admin.headers)).json()["items"]
    assert sorted(r["status"] for r in runs) == ["pending", "queued"]

    cancelled = await client.post(
        f"/collection/runs/{active['id']}/cancel", headers=org.admin.headers
    )
    assert cancelled.json()["status"] == "cancelled"
    started = await left_queue(client, org.admin, str(queued.run_id))
    assert started["status"] in ("running", "completed")
    assert started["started_at"] is not None
    await cancel_all(client, org.admin)


async def test_a_queued_run_waits_while_a_run_is_active_and_starts_exactly_once(
    client: httpx.AsyncClient,
    org: Org,
    clock: FakeClock,
    schedules: ScheduleService,
    database: Database,
    settings: Settings,
    app: FastAPI,
) -> None:
    await hourly(client, org, "buffer_one")
    active = await manual_run(client, org)
    clock.set(EPOCH + HOUR)
    (queued,) = await schedules.fire_due()
    replicas = [Leases(database, settings, clock=clock) for _ in range(4)]
    assert await replicas[0].start_queued() == []  # the manual run is still active
    # the run ends on "another replica" (no poke here): every replica races to start it
    async with database.transaction() as session:
        await app.state.instance.runs.cancel_run(
            session, org_id=org.admin.org_id, run_id=uuid.UUID(active["id"])
        )
    outcomes = await asyncio.gather(*(replica.start_queued() for replica in replicas))
    started = [run_id for result in outcomes for run_id in result]
    # the app's own executor sweeps too and may have won the race: one start in all
    current = await run(client, org.admin, str(queued.run_id))
    assert current["status"] != "queued"
    assert len(started) <= 1
    assert set(started) <= {queued.run_id}
    assert await replicas[0].start_queued() == []
    await cancel_all(client, org.admin)


async def test_cancel_other_cancels_the_active_run_and_starts_this_one(
    client: httpx.AsyncClient,
    org: Org,
    clock: FakeClock,
    schedules: ScheduleService,
    app: FastAPI,
) -> None:
    schedule = await hourly(client, org, "cancel_other")
    active = await manual_run(client, org)
    clock.set(EPOCH + HOUR)
    (replaced,) = await schedules.fire_due()
    app.state.instance.scheduler.handle_fired([replaced])  # as the engine does: pokes the sweep
    assert replaced.outcome.value == "replaced"
    assert replaced.replaced_run_id == uuid.UUID(active["id"])
    assert replaced.detail == (
        f"cancelled run {active['id']} (pending), now cancelled; "
        "this run starts once it reads cancelled"
    )
    old = await run(client, org.admin, active["id"])
    assert (old["status"], old["finished_at"] is not None) == ("cancelled", True)
    await schedules.fire_due()  # nothing more is due
    new = await left_queue(client, org.admin, str(replaced.run_id))
    assert new["status"] in ("running", "completed")
    history = (
        await client.get(
            f"/collection/schedules/{schedule['id']}/history", headers=org.admin.headers
        )
    ).json()["items"]
    assert [(f["outcome"], f["run_id"]) for f in history] == [("replaced", str(replaced.run_id))]
    await cancel_all(client, org.admin)


async def test_a_queued_run_can_be_cancelled_and_then_never_starts(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, schedules: ScheduleService, app: FastAPI
) -> None:
    await hourly(client, org, "buffer_one")
    active = await manual_run(client, org)
    clock.set(EPOCH + HOUR)
    (queued,) = await schedules.fire_due()
    response = await client.post(
        f"/collection/runs/{queued.run_id}/cancel", headers=org.admin.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    await client.post(f"/collection/runs/{active['id']}/cancel", headers=org.admin.headers)
    assert await app.state.instance.leases.start_queued() == []
    assert (await run(client, org.admin, str(queued.run_id)))["status"] == "cancelled"


async def test_the_policy_is_part_of_the_schedule_and_checked(
    client: httpx.AsyncClient, org: Org, clock: FakeClock
) -> None:
    schedule = await hourly(client, org, "buffer_one")
    assert schedule["overlap_policy"] == "buffer_one"
    changed = await client.patch(
        f"/collection/schedules/{schedule['id']}",
        json={"overlap_policy": "cancel_other"},
        headers=org.admin.headers,
    )
    assert changed.json()["overlap_policy"] == "cancel_other"
    wrong = await client.patch(
        f"/collection/schedules/{schedule['id']}",
        json={"overlap_policy": "allow_all"},
        headers=org.admin.headers,
    )
    assert wrong.status_code == 422
    assert "'skip', 'buffer_one' or 'cancel_other'" in wrong.text


async def test_metrics_count_fires_by_outcome_and_policy(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, app: FastAPI
) -> None:
    await hourly(client, org, "buffer_one")
    await manual_run(client, org)
    line = 'schedule_fires_total{outcome="queued",policy="buffer_one",trigger="schedule"}'

    def count(text: str) -> float:
        found = [row for row in text.splitlines() if row.startswith(line)]
        return float(found[0].rsplit(" ", 1)[1]) if found else 0.0

    before = count((await client.get("/metrics")).text)
    clock.set(EPOCH + HOUR)
    engine = app.state.instance.scheduler
    engine.handle_fired(await app.state.instance.schedules.fire_due())
    assert count((await client.get("/metrics")).text) == before + 1
