"""Real server processes: a schedule survives a restart and fires, and three replicas on
PostgreSQL fire each due time exactly once, even when one of them is killed."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from app.core.database import Database
from app.tables import (
    CategoryPreset,
    CollectionRun,
    CollectionSchedule,
    Organization,
    RunTrigger,
    ScheduleFire,
)
from tests.helpers.databases import temp_database
from tests.helpers.processes import Server, bootstrap, clean_env, wait_healthy
from tests.helpers.settings import make_settings

pytestmark = pytest.mark.slow

SECRET = "sched-secret-" + "s" * 40
FAST = {
    "JWT_SECRET": SECRET,
    "SCHEDULER_POLL_SECONDS": "0.5",
    "SAMPLE_PROVIDER_LATENCY_MS": "0",
    "RUN_PRODUCTS_PER_CATEGORY": "2",
    "RUN_LISTINGS_PER_PRODUCT": "2",
    "RUN_LEASE_SECONDS": "2",
    "RUN_SWEEP_SECONDS": "0.5",
}


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    base = os.environ.get("TEST_DATABASE_URL")
    if base:
        with temp_database(base, "sched") as url:
            yield clean_env(DATABASE_URL=url, DATA_DIR=str(tmp_path / "data"), **FAST)
    else:
        yield clean_env(DATA_DIR=str(tmp_path / "data"), **FAST)


def _database(env: dict[str, str]) -> Database:
    return Database.from_settings(
        make_settings(
            database_url=env.get("DATABASE_URL", ""),
            data_dir=Path(env["DATA_DIR"]),
            jwt_secret=SECRET,
        )
    )


async def _set_due(env: dict[str, str], due: datetime) -> None:
    """Make every enabled schedule due at `due` (as if its cron time were near)."""
    database = _database(env)
    try:
        async with database.transaction() as session:
            await session.execute(
                sa.update(CollectionSchedule)
                .where(CollectionSchedule.enabled)
                .values(next_run_at=due)
            )
    finally:
        await database.dispose()


async def _fires(env: dict[str, str]) -> list[Any]:
    database = _database(env)
    try:
        async with database.read() as session:
            return list(
                (
                    await session.execute(
                        sa.select(
                            ScheduleFire.schedule_id,
                            ScheduleFire.scheduled_for,
                            ScheduleFire.outcome,
                            ScheduleFire.instance_id,
                        )
                    )
                ).all()
            )
    finally:
        await database.dispose()


def _wait_for_fires(env: dict[str, str], count: int, within: float = 30.0) -> list[Any]:
    deadline = time.monotonic() + within
    while True:
        fires = asyncio.run(_fires(env))
        if len(fires) >= count or time.monotonic() > deadline:
            return fires
        time.sleep(0.2)


def test_schedule_survives_restart_and_fires(env: dict[str, str], tmp_path: Path) -> None:
    server = Server(env, tmp_path, "before")
    try:
        wait_healthy(server.url, server.process)
        token = bootstrap(env)["token"]
        headers = {"Authorization": f"Bearer {token}"}
        preset = httpx.post(
            f"{server.url}/collection/presets",
            json={"name": "Electronics", "category_ids": ["172282"]},
            headers=headers,
        ).json()
        # a daily time twelve hours away: no real due time can fall inside the test
        later = (datetime.now(UTC) + timedelta(hours=12)).replace(second=0, microsecond=0)
        saved = httpx.patch(
            f"{server.url}/collection/schedule",
            json={
                "preset_id": preset["id"],
                "enabled": True,
                "cron_expression": f"{later.minute} {later.hour} * * *",
            },
            headers=headers,
        )
        assert saved.status_code == 200, saved.text
    finally:
        server.stop()

    due = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0)
    asyncio.run(_set_due(env, due))
    restarted = Server(env, tmp_path, "after")
    try:
        wait_healthy(restarted.url, restarted.process)
        (fire,) = _wait_for_fires(env, 1)
        assert fire.scheduled_for == due
        assert fire.outcome.value == "started"
        body = httpx.get(f"{restarted.url}/collection/schedule", headers=headers).json()
        assert body["last_outcome"] == "started"
        assert datetime.fromisoformat(body["next_run_at"]) == later  # the cron's next time
        history = httpx.get(f"{restarted.url}/collection/schedule/history", headers=headers)
        (entry,) = history.json()["items"]
        run = httpx.get(f"{restarted.url}/collection/runs/{entry['run_id']}", headers=headers)
        assert run.json()["trigger"] == "schedule"
    finally:
        restarted.stop()
    assert "Traceback" not in restarted.logs()


async def _seed_orgs(env: dict[str, str], count: int) -> list[uuid.UUID]:
    """Organizations, each with a preset and an enabled schedule (written directly)."""
    database = _database(env)
    far = datetime.now(UTC) + timedelta(days=30)
    # Once a schedule fires, its next due time comes from its cron expression; pick one
    # twelve hours away so that only the due times the test sets fall inside the test.
    later = datetime.now(UTC) + timedelta(hours=12)
    cron_expression = f"{later.minute} {later.hour} * * *"
    try:
        async with database.transaction() as session:
            schedule_ids = []
            for index in range(count):
                org = Organization(name=f"Org {index}")
                session.add(org)
                await session.flush()
                preset = CategoryPreset(org_id=org.id, name="p", category_ids=[str(index + 1)])
                session.add(preset)
                await session.flush()
                schedule = CollectionSchedule(
                    org_id=org.id,
                    preset_id=preset.id,
                    cron_expression=cron_expression,
                    enabled=True,
                    next_run_at=far,
                )
                session.add(schedule)
                await session.flush()
                schedule_ids.append(schedule.id)
            return schedule_ids
    finally:
        await database.dispose()


async def _scheduled_runs(env: dict[str, str]) -> int:
    database = _database(env)
    try:
        async with database.read() as session:
            count = await session.scalar(
                sa.select(sa.func.count())
                .select_from(CollectionRun)
                .where(CollectionRun.trigger == RunTrigger.SCHEDULE)
            )
            return int(count or 0)
    finally:
        await database.dispose()


def test_three_replicas_fire_exactly_once_even_when_one_is_killed(
    env: dict[str, str], tmp_path: Path
) -> None:
    if "DATABASE_URL" not in env:
        pytest.skip("several replicas share PostgreSQL; the embedded SQLite is one process")
    orgs = 30
    replicas = [Server({**env, "INSTANCE_ID": f"replica-{i}"}, tmp_path, f"r{i}") for i in range(3)]
    try:
        for replica in replicas:
            wait_healthy(replica.url, replica.process, timeout=60)
        schedule_ids = asyncio.run(_seed_orgs(env, orgs))

        first_due = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
        asyncio.run(_set_due(env, first_due))
        fires = _wait_for_fires(env, orgs)
        assert len(fires) == orgs
        assert {f.outcome.value for f in fires} == {"started"}
        assert asyncio.run(_scheduled_runs(env)) == orgs

        replicas[0].process.send_signal(signal.SIGKILL)
        replicas[0].process.wait(timeout=10)

        second_due = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
        asyncio.run(_set_due(env, second_due))
        fires = _wait_for_fires(env, 2 * orgs)
        time.sleep(1.5)  # a few more poll cycles: nothing may fire twice
        fires = asyncio.run(_fires(env))
    finally:
        for replica in replicas:
            replica.stop()
    assert len(fires) == 2 * orgs
    keys = {(f.schedule_id, f.scheduled_for) for f in fires}
    assert len(keys) == 2 * orgs  # exactly once per (schedule, due time)
    assert {f.scheduled_for for f in fires} == {first_due, second_due}
    assert {f.schedule_id for f in fires} == set(schedule_ids)
    second = [f for f in fires if f.scheduled_for == second_due]
    assert {f.instance_id for f in second} <= {"replica-1", "replica-2"}
    for replica in replicas[1:]:
        assert "Traceback" not in replica.logs(), replica.logs()


async def _queued_state(env: dict[str, str]) -> tuple[list[Any], list[Any]]:
    """The fire log (instance, outcome, run) and the scheduled runs (id, status, started)."""
    database = _database(env)
    try:
        async with database.read() as session:
            fires = (
                await session.execute(
                    sa.select(ScheduleFire.instance_id, ScheduleFire.outcome, ScheduleFire.run_id)
                )
            ).all()
            runs = (
                await session.execute(
                    sa.select(
                        CollectionRun.id, CollectionRun.status, CollectionRun.started_at
                    ).where(CollectionRun.trigger == RunTrigger.SCHEDULE)
                )
            ).all()
            return list(fires), list(runs)
    finally:
        await database.dispose()


def test_a_queued_fire_survives_a_kill_9_of_its_replica_and_starts_exactly_once(
    env: dict[str, str], tmp_path: Path
) -> None:
    """buffer_one: the fire while a run is active queues a run. The replica that fired it is
    killed; when the active run ends, a surviving (or restarted) replica starts the queued
    run, once."""
    several = "DATABASE_URL" in env  # PostgreSQL: two replicas; SQLite: one, restarted
    names = ["a", "b"] if several else ["a"]
    servers = {n: Server({**env, "INSTANCE_ID": f"replica-{n}"}, tmp_path, n) for n in names}
    try:
        for server in servers.values():
            wait_healthy(server.url, server.process, timeout=60)
        first = next(iter(servers.values()))
        headers = {"Authorization": f"Bearer {bootstrap(env)['token']}"}
        preset = httpx.post(
            f"{first.url}/collection/presets",
            json={"name": "Electronics", "category_ids": ["172282"]},
            headers=headers,
        ).json()
        later = datetime.now(UTC) + timedelta(hours=12)
        created = httpx.post(
            f"{first.url}/collection/schedules",
            json={
                "name": "Daily",
                "preset_id": preset["id"],
                "cron_expression": f"{later.minute} {later.hour} * * *",
                "jitter_seconds": 0,
                "overlap_policy": "buffer_one",
            },
            headers=headers,
        )
        assert created.status_code == 201, created.text
        active = httpx.post(
            f"{first.url}/collection/runs", json={"preset_id": preset["id"]}, headers=headers
        ).json()  # pending: the organization's active run until it is cancelled

        asyncio.run(
            _set_due(env, (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0))
        )
        (fire,) = _wait_for_fires(env, 1)
        assert fire.outcome.value == "queued"
        holder = servers[fire.instance_id.removeprefix("replica-")]
        holder.process.send_signal(signal.SIGKILL)
        holder.process.wait(timeout=10)

        survivor = (
            next(s for s in servers.values() if s is not holder)
            if several
            else Server({**env, "INSTANCE_ID": "replica-b"}, tmp_path, "b")
        )
        servers["b"] = survivor
        wait_healthy(survivor.url, survivor.process, timeout=60)
        _, runs = asyncio.run(_queued_state(env))
        assert [r.status.value for r in runs] == ["queued"]  # still waiting, not lost
        cancelled = httpx.post(
            f"{survivor.url}/collection/runs/{active['id']}/cancel", headers=headers
        )
        assert cancelled.json()["status"] == "cancelled"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            fires, runs = asyncio.run(_queued_state(env))
            if runs and runs[0].status.value == "completed":
                break
            time.sleep(0.2)
        time.sleep(1.5)  # a few more sweeps: nothing may start it again
        fires, runs = asyncio.run(_queued_state(env))
    finally:
        for server in servers.values():
            server.stop()
    assert [(f.outcome.value, f.run_id) for f in fires] == [("queued", runs[0].id)]
    assert [r.status.value for r in runs] == ["completed"]  # one scheduled run, run once
    logs = survivor.logs()
    assert logs.count(f"run {runs[0].id}: started (was queued)") == 1, logs
    assert "Traceback" not in logs, logs
