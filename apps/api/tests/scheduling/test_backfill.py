"""Backfill: a schedule's past due times in a window, each run at most once (also when asked
twice, or twice at the same moment), capped at 100, one after another in due-time order,
under the schedule's overlap policy; nothing written when it is refused."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app.core.database import Database
from app.runs.leases import Leases
from app.scheduling.schedules import ScheduleService
from app.tables import ACTIVE_RUN_STATUSES, CollectionRun, RunStatus
from tests.helpers.actors import Actor, Actors
from tests.helpers.scheduling import EPOCH, FakeClock, Org, cancel_all, make_org, runs_of

HOUR = timedelta(hours=1)
DAY_START = datetime(2027, 1, 15, tzinfo=UTC)  # EPOCH is 12:00 that day
ENDED = ("completed", "failed", "cancelled")


def at(hour: int, day: datetime = DAY_START) -> datetime:
    return day + hour * HOUR


async def hourly(client: httpx.AsyncClient, org: Org, policy: str, **extra: Any) -> dict[str, Any]:
    response = await client.post(
        "/collection/schedules",
        json={
            "name": f"Hourly, {policy}",
            "preset_id": org.preset_id,
            "cron_expression": "0 * * * *",
            "jitter_seconds": 0,
            "overlap_policy": policy,
            **extra,
        },
        headers=org.admin.headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def backfill(
    client: httpx.AsyncClient,
    actor: Actor,
    schedule_id: str,
    start: datetime | str,
    end: datetime | str,
    status: int = 202,
) -> dict[str, Any]:
    body = {
        "start": start.isoformat() if isinstance(start, datetime) else start,
        "end": end.isoformat() if isinstance(end, datetime) else end,
    }
    response = await client.post(
        f"/collection/schedules/{schedule_id}/backfill", json=body, headers=actor.headers
    )
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


async def manual_run(client: httpx.AsyncClient, org: Org) -> dict[str, Any]:
    """A pending run made by hand: the organization's active run (nobody executes it)."""
    response = await client.post(
        "/collection/runs", json={"preset_id": org.preset_id}, headers=org.admin.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def fires_of(
    client: httpx.AsyncClient, actor: Actor, schedule_id: str
) -> list[dict[str, Any]]:
    response = await client.get(
        f"/collection/schedules/{schedule_id}/history",
        params={"limit": 200},
        headers=actor.headers,
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def times(items: list[dict[str, Any]]) -> list[datetime]:
    return [datetime.fromisoformat(item["scheduled_for"]) for item in items]


async def backfill_runs(client: httpx.AsyncClient, actor: Actor) -> list[dict[str, Any]]:
    return [run for run in await runs_of(client, actor) if run["trigger"] == "backfill"]


async def settled(client: httpx.AsyncClient, actor: Actor, run_id: str) -> dict[str, Any]:
    """The run once it has ended (completed, failed or cancelled), within 30 seconds."""
    for _ in range(1500):
        run = (await client.get(f"/collection/runs/{run_id}", headers=actor.headers)).json()
        if run["status"] in ENDED:
            return dict(run)
        await asyncio.sleep(0.02)
    raise AssertionError(f"run {run_id} never ended")


async def test_each_due_time_is_backfilled_once_across_requests(
    client: httpx.AsyncClient, org: Org, clock: FakeClock
) -> None:
    schedule = await hourly(client, org, "buffer_one")
    await manual_run(client, org)  # keeps the backfill runs queued
    first = await backfill(client, org.admin, schedule["id"], at(0), at(2))
    assert first["requested"] == 3
    assert times(first["queued"]) == [at(0), at(1), at(2)]
    assert (first["already_backfilled"], first["already_ran"]) == ([], [])
    assert first["replaced_run_id"] is None

    second = await backfill(client, org.admin, schedule["id"], at(1), at(4))
    assert second["requested"] == 4
    assert times(second["queued"]) == [at(3), at(4)]
    assert second["already_backfilled"] == first["queued"][1:]  # the same fires and runs
    again = await backfill(client, org.admin, schedule["id"], at(0), at(4))
    assert (again["queued"], len(again["already_backfilled"])) == ([], 5)

    fires = await fires_of(client, org.admin, schedule["id"])
    assert len(fires) == 5
    assert {(f["outcome"], f["backfill"], f["manual"]) for f in fires} == {("queued", True, False)}
    by_time = {datetime.fromisoformat(f["scheduled_for"]): f for f in fires}
    assert by_time[at(0)]["detail"].startswith(f"backfill of due time {at(0).isoformat()}; waits")
    for item in first["queued"]:
        assert item["run_url"] == f"/collection/runs/{item['run_id']}"
        assert by_time[datetime.fromisoformat(item["scheduled_for"])]["id"] == item["fire_id"]
    runs = await backfill_runs(client, org.admin)
    assert sorted(r["name"] for r in runs) == [
        f"Electronics (backfill of 2027-01-15 0{hour}:00 UTC)" for hour in range(5)
    ]
    assert {(r["status"], r["schedule_id"]) for r in runs} == {("queued", schedule["id"])}
    await cancel_all(client, org.admin)


async def test_two_requests_at_the_same_moment_backfill_each_due_time_once(
    client: httpx.AsyncClient, org: Org, clock: FakeClock
) -> None:
    schedule = await hourly(client, org, "buffer_one")
    await manual_run(client, org)
    answers = await asyncio.gather(
        *(backfill(client, org.admin, schedule["id"], at(0), at(3)) for _ in range(2))
    )
    queued = sorted(t for answer in answers for t in times(answer["queued"]))
    assert queued == [at(0), at(1), at(2), at(3)]  # each once, whoever won it
    for answer in answers:
        both = times(answer["queued"]) + times(answer["already_backfilled"])
        assert sorted(both) == queued
    assert len(await backfill_runs(client, org.admin)) == 4
    assert len(await fires_of(client, org.admin, schedule["id"])) == 4
    await cancel_all(client, org.admin)


async def test_at_most_100_due_times_and_nothing_is_written_beyond(
    client: httpx.AsyncClient, org: Org, clock: FakeClock
) -> None:
    schedule = await hourly(client, org, "buffer_one")
    await manual_run(client, org)
    day = datetime(2027, 1, 10, tzinfo=UTC)
    refused = await backfill(client, org.admin, schedule["id"], day, at(100, day), status=422)
    assert refused["detail"] == (
        f"the window between {day.isoformat()} and {at(100, day).isoformat()} holds 101 due "
        "times of '0 * * * *' (UTC); a backfill runs at most 100: narrow the window"
    )
    huge = await backfill(client, org.admin, schedule["id"], "2020-01-01T00:00:00Z", day, 422)
    assert "holds more than 10,000 due times" in huge["detail"]
    assert await fires_of(client, org.admin, schedule["id"]) == []
    assert await backfill_runs(client, org.admin) == []

    exactly = await backfill(client, org.admin, schedule["id"], day, at(99, day))
    assert (exactly["requested"], len(exactly["queued"])) == (100, 100)
    await cancel_all(client, org.admin)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"start": "2027-01-15T00:00:00", "end": "2027-01-15T02:00:00Z"}, "timezone"),
        (
            {"start": "2027-01-15T00:00:00Z", "end": "2027-01-15T02:00:00Z", "force": True},
            "Extra inputs are not permitted",
        ),
        (
            {"start": "2027-01-15T02:00:00Z", "end": "2027-01-15T02:00:00Z"},
            "end (2027-01-15T02:00:00+00:00) must be after start (2027-01-15T02:00:00+00:00)",
        ),
        (
            {"start": "2027-01-15T00:00:00Z", "end": "2027-01-15T12:00:01Z"},
            "end 2027-01-15T12:00:01+00:00 is in the future (it is 2027-01-15T12:00:00+00:00 "
            "now): a backfill runs due times that have passed; ask for an end at or before now",
        ),
        (
            {"start": "2027-01-15T00:01:00Z", "end": "2027-01-15T00:59:00Z"},
            "no due time of '0 * * * *' (UTC) lies between 2027-01-15T00:01:00+00:00 and "
            "2027-01-15T00:59:00+00:00: widen the window",
        ),
    ],
)
async def test_a_window_that_does_not_fit_is_422_saying_what_to_fix(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, body: dict[str, Any], expected: str
) -> None:
    schedule = await hourly(client, org, "skip")
    response = await client.post(
        f"/collection/schedules/{schedule['id']}/backfill", json=body, headers=org.admin.headers
    )
    assert response.status_code == 422, response.text
    assert expected in response.text
    assert await fires_of(client, org.admin, schedule["id"]) == []


async def test_due_times_the_schedule_has_still_to_fire_are_its_own(
    client: httpx.AsyncClient, org: Org, clock: FakeClock
) -> None:
    schedule = await hourly(client, org, "skip", starts_at=at(2).isoformat())
    clock.set(EPOCH + 1.5 * HOUR)  # 13:00 is due, not fired yet: the schedule fires it
    refused = await backfill(client, org.admin, schedule["id"], at(12) + HOUR / 2, clock.now, 422)
    assert refused["detail"].endswith(
        f"(due times from {at(13).isoformat()} on are the schedule's own to fire): widen the window"
    )
    # the window is clipped to the schedule's starts_at as well
    answer = await backfill(client, org.admin, schedule["id"], at(0), clock.now)
    assert times(answer["queued"]) == [at(hour) for hour in range(2, 13)]
    await cancel_all(client, org.admin)


async def test_skip_refuses_while_a_run_is_active_and_writes_nothing(
    client: httpx.AsyncClient, org: Org, clock: FakeClock
) -> None:
    schedule = await hourly(client, org, "skip")
    active = await manual_run(client, org)
    refused = await backfill(client, org.admin, schedule["id"], at(0), at(2), status=409)
    assert refused["detail"] == (
        f"a run is active (run {active['id']}, pending); this schedule's overlap policy is "
        "skip: retry when it ends, or set overlap_policy to buffer_one"
    )
    assert await fires_of(client, org.admin, schedule["id"]) == []
    assert [r["id"] for r in await runs_of(client, org.admin)] == [active["id"]]


async def test_buffer_one_queues_behind_the_active_run_then_one_after_another_by_due_time(
    client: httpx.AsyncClient,
    org: Org,
    clock: FakeClock,
    app: FastAPI,
    database: Database,
    schedules: ScheduleService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    leases: Leases = app.state.instance.leases
    started: list[uuid.UUID] = []
    start_queued = leases.start_queued

    async def recording() -> list[uuid.UUID]:
        """Queued runs start only here: note which, in order, and that nothing else was
        active then (the one before it had ended)."""
        ids = await start_queued()
        async with database.read() as session:
            for run_id in ids:
                run = await session.get_one(CollectionRun, run_id)
                others = await session.scalars(
                    sa.select(CollectionRun.id).where(
                        CollectionRun.org_id == run.org_id,
                        CollectionRun.id != run_id,
                        CollectionRun.status.in_(ACTIVE_RUN_STATUSES),
                    )
                )
                assert list(others) == [], "a queued run started while another was active"
        started.extend(ids)
        return ids

    monkeypatch.setattr(leases, "start_queued", recording)
    schedule = await hourly(client, org, "buffer_one")
    active = await manual_run(client, org)
    # asked out of order, in two requests: they run by due time
    late = await backfill(client, org.admin, schedule["id"], at(3), at(3) + HOUR / 2)
    clock.set(EPOCH + timedelta(minutes=1))  # created later, due earlier: these go first
    early = await backfill(client, org.admin, schedule["id"], at(0), at(2))
    run_ids = [item["run_id"] for item in early["queued"] + late["queued"]]
    assert await leases.start_queued() == []  # the active run is still there
    # a queued backfill run can be cancelled; the others go on without it
    cancelled = await client.post(
        f"/collection/runs/{run_ids[1]}/cancel", headers=org.admin.headers
    )
    assert cancelled.json()["status"] == "cancelled"
    # the schedule's own queued run, made last, goes first
    clock.set(at(13))
    (own,) = await schedules.fire_due()
    assert own.outcome.value == "queued"

    ended = await client.post(f"/collection/runs/{active['id']}/cancel", headers=org.admin.headers)
    assert ended.json()["status"] == "cancelled"
    for run_id in (str(own.run_id), run_ids[0], run_ids[2], run_ids[3]):
        run = await settled(client, org.admin, run_id)
        assert run["started_at"] is not None
    assert started == [own.run_id] + [uuid.UUID(run_ids[i]) for i in (0, 2, 3)]
    assert (await settled(client, org.admin, run_ids[1]))["started_at"] is None


async def test_cancel_other_cancels_the_active_run_for_the_backfill(
    client: httpx.AsyncClient, org: Org, clock: FakeClock
) -> None:
    schedule = await hourly(client, org, "cancel_other")
    active = await manual_run(client, org)
    answer = await backfill(client, org.admin, schedule["id"], at(0), at(1))
    assert answer["replaced_run_id"] == active["id"]
    old = (await client.get(f"/collection/runs/{active['id']}", headers=org.admin.headers)).json()
    assert old["status"] == "cancelled"
    fires = await fires_of(client, org.admin, schedule["id"])
    (first,) = [f for f in fires if datetime.fromisoformat(f["scheduled_for"]) == at(0)]
    assert first["detail"] == (
        f"backfill of due time {at(0).isoformat()}; cancelled run {active['id']} (pending), "
        "now cancelled; starts once it reads cancelled"
    )
    for item in answer["queued"]:  # one after another, the first at once
        assert (await settled(client, org.admin, item["run_id"]))["started_at"] is not None


@pytest.mark.parametrize("policy", ["skip", "cancel_other"])
async def test_a_backfill_run_is_neither_skipped_for_nor_cancelled_by_a_backfill(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, database: Database, policy: str
) -> None:
    schedule = await hourly(client, org, "buffer_one")
    active = await manual_run(client, org)
    first = await backfill(client, org.admin, schedule["id"], at(0), at(1))
    running = uuid.UUID(first["queued"][0]["run_id"])
    async with database.transaction() as session:  # its first run is the active one now
        await session.execute(
            sa.update(CollectionRun)
            .where(CollectionRun.id == uuid.UUID(active["id"]))
            .values(status=RunStatus.CANCELLED)
        )
        await session.execute(
            sa.update(CollectionRun)
            .where(CollectionRun.id == running)
            .values(status=RunStatus.PENDING)
        )
    changed = await client.patch(
        f"/collection/schedules/{schedule['id']}",
        json={"overlap_policy": policy},
        headers=org.admin.headers,
    )
    assert changed.status_code == 200, changed.text
    second = await backfill(client, org.admin, schedule["id"], at(2), at(3))
    assert (len(second["queued"]), second["replaced_run_id"]) == (2, None)
    run = (await client.get(f"/collection/runs/{running}", headers=org.admin.headers)).json()
    assert run["status"] == "pending"
    fires = await fires_of(client, org.admin, schedule["id"])
    (detail,) = [f["detail"] for f in fires if datetime.fromisoformat(f["scheduled_for"]) == at(2)]
    assert detail.endswith(f"waits for run {running} (pending) to end")
    await cancel_all(client, org.admin)


async def test_a_due_time_whose_own_fire_started_a_run_is_not_backfilled(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, schedules: ScheduleService
) -> None:
    schedule = await hourly(client, org, "skip")
    clock.set(at(13))
    (ran,) = await schedules.fire_due()
    assert ran.outcome.value == "started"
    await cancel_all(client, org.admin)
    blocker = await manual_run(client, org)
    clock.set(at(14))
    (skipped,) = await schedules.fire_due()
    assert skipped.outcome.value == "skipped"
    await client.post(f"/collection/runs/{blocker['id']}/cancel", headers=org.admin.headers)

    clock.set(at(14) + HOUR / 2)
    answer = await backfill(client, org.admin, schedule["id"], at(12), clock.now)
    assert answer["requested"] == 3
    assert answer["already_ran"] == [
        {
            "scheduled_for": at(13).isoformat().replace("+00:00", "Z"),
            "fire_id": str(ran.fire_id),
            "run_id": str(ran.run_id),
            "run_url": f"/collection/runs/{ran.run_id}",
        }
    ]
    assert times(answer["queued"]) == [at(12), at(14)]  # 14:00 was skipped: it is backfilled
    fires = await fires_of(client, org.admin, schedule["id"])
    at_14 = [
        (f["outcome"], f["backfill"])
        for f in fires
        if f["scheduled_for"].startswith("2027-01-15T14")
    ]
    assert sorted(at_14) == [("queued", True), ("skipped", False)]
    await cancel_all(client, org.admin)


async def test_backfill_leaves_the_schedule_s_timing_and_budget_alone(
    client: httpx.AsyncClient, org: Org, clock: FakeClock
) -> None:
    schedule = await hourly(client, org, "buffer_one", remaining_runs=2)
    await manual_run(client, org)
    await backfill(client, org.admin, schedule["id"], at(0), at(2))
    after = (
        await client.get(f"/collection/schedules/{schedule['id']}", headers=org.admin.headers)
    ).json()
    for name in ("next_run_at", "last_run_at", "last_outcome", "remaining_runs", "enabled"):
        assert after[name] == schedule[name], name
    # a disabled schedule can be backfilled too
    paused = await client.patch(
        f"/collection/schedules/{schedule['id']}",
        json={"enabled": False, "paused_note": "audit"},
        headers=org.admin.headers,
    )
    assert paused.status_code == 200, paused.text
    answer = await backfill(client, org.admin, schedule["id"], at(3), at(12))
    assert len(answer["queued"]) == 10  # nothing left to the schedule: it fires nothing now
    await cancel_all(client, org.admin)


async def test_a_schedule_without_a_preset_cannot_be_backfilled(
    client: httpx.AsyncClient, org: Org, clock: FakeClock
) -> None:
    schedule = await hourly(client, org, "skip", enabled=False)
    deleted = await client.delete(f"/collection/presets/{org.preset_id}", headers=org.admin.headers)
    assert deleted.status_code == 204, deleted.text
    refused = await backfill(client, org.admin, schedule["id"], at(0), at(1), status=400)
    assert refused["detail"] == "the schedule has no preset: set preset_id first"
    assert await fires_of(client, org.admin, schedule["id"]) == []


async def test_another_organization_s_schedule_is_404_a_member_403_a_bad_token_401(
    client: httpx.AsyncClient, org: Org, actors: Actors, clock: FakeClock
) -> None:
    schedule = await hourly(client, org, "skip")
    path = f"/collection/schedules/{schedule['id']}/backfill"
    body = {"start": at(0).isoformat(), "end": at(1).isoformat()}
    other = await make_org(client, actors, name="Other")
    foreign = await client.post(path, json=body, headers=other.admin.headers)
    assert foreign.status_code == 404, foreign.text
    member = await actors.member(org.admin, "member")
    refused = await client.post(path, json=body, headers=member.headers)
    assert refused.status_code == 403, refused.text
    anonymous = await client.post(path, json=body, headers={"Authorization": "Bearer nope"})
    assert anonymous.status_code == 401
    assert await fires_of(client, org.admin, schedule["id"]) == []


async def test_metrics_count_backfill_fires(
    client: httpx.AsyncClient, org: Org, clock: FakeClock
) -> None:
    schedule = await hourly(client, org, "buffer_one")
    await manual_run(client, org)
    line = 'schedule_fires_total{outcome="queued",policy="buffer_one",trigger="backfill"}'

    def count(text: str) -> float:
        found = [row for row in text.splitlines() if row.startswith(line)]
        return float(found[0].rsplit(" ", 1)[1]) if found else 0.0

    before = count((await client.get("/metrics")).text)
    await backfill(client, org.admin, schedule["id"], at(0), at(2))
    assert count((await client.get("/metrics")).text) == before + 3
    await cancel_all(client, org.admin)
