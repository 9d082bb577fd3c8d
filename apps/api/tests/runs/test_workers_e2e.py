"""Real processes: a worker answers its probes and drains on SIGTERM; API-only replicas and
workers on one PostgreSQL database, where a run started through the API is executed by a
worker, handed over at once when its worker gets SIGTERM, taken over after its lease when
the next one is killed with SIGKILL, and ends with exactly the rows of an uninterrupted
run."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from app.auth import issue_token
from app.core.database import Database
from app.tables import CollectionRun, RunListing
from tests.helpers.databases import temp_database
from tests.helpers.processes import Server, Worker, clean_env, wait_healthy
from tests.helpers.runs import created_at, expected_listings
from tests.helpers.settings import make_settings

pytestmark = pytest.mark.slow

SECRET = "workers-secret-" + "w" * 40
CATEGORIES = ["172282", "541966", "1055398", "3760911", "165793011", "2619525011"]
PER_CATEGORY = 20
LEASE_SECONDS = 6
SETTINGS = {
    "JWT_SECRET": SECRET,
    "SAMPLE_PROVIDER_LATENCY_MS": "50",
    "RUN_PROVIDER_CONCURRENCY": "2",
    "RUN_LEASE_SECONDS": str(LEASE_SECONDS),
    "RUN_SWEEP_SECONDS": "1",
}


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    base = os.environ.get("TEST_DATABASE_URL")
    if base:
        with temp_database(base, "workers") as url:
            yield clean_env(DATABASE_URL=url, DATA_DIR=str(tmp_path / "data"), **SETTINGS)
    else:
        yield clean_env(DATA_DIR=str(tmp_path / "data"), **SETTINGS)


def test_a_worker_answers_its_probes_and_drains_on_sigterm(
    env: dict[str, str], tmp_path: Path
) -> None:
    worker = Worker({**env, "INSTANCE_ID": "worker-1"}, tmp_path, "worker")
    try:
        wait_healthy(worker.url, worker.process)
        health = httpx.get(f"{worker.url}/health").json()
        assert (health["role"], health["state"]) == ("worker", "running")
        assert httpx.get(f"{worker.url}/ready").json()["checks"]["scheduler"] == "ok"
        worker.process.send_signal(signal.SIGTERM)
        assert worker.process.wait(timeout=15) == 0
    finally:
        worker.stop()
    logs = worker.logs()
    assert "SIGTERM received: draining" in logs
    assert "draining: no runs to hand over" in logs
    assert "instance worker-1 stopped" in logs
    assert "Traceback" not in logs


def _database(env: dict[str, str]) -> Database:
    return Database.from_settings(
        make_settings(database_url=env["DATABASE_URL"], data_dir=Path(env["DATA_DIR"]))
    )


def _lease(env: dict[str, str], run_id: str) -> tuple[str, str | None, int]:
    """The run's status, lease owner and products searched, read from the database."""

    async def read() -> tuple[str, str | None, int]:
        database = _database(env)
        try:
            async with database.read() as session:
                row = (
                    await session.execute(
                        sa.select(
                            CollectionRun.status,
                            CollectionRun.lease_owner,
                            CollectionRun.products_searched,
                        ).where(CollectionRun.id == uuid.UUID(run_id))
                    )
                ).one()
            return row[0].value, row[1], row[2]
        finally:
            await database.dispose()

    return asyncio.run(read())


def _wait(
    env: dict[str, str], run_id: str, holds: Callable[[str, str | None, int], bool], within: float
) -> tuple[str, str | None, int]:
    deadline = time.monotonic() + within
    while True:
        state = _lease(env, run_id)
        if holds(*state):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"run never reached the expected state: {state}")
        time.sleep(0.05)


async def _stored(env: dict[str, str], run_id: str) -> list[tuple[str, str, str]]:
    database = _database(env)
    try:
        async with database.read() as session:
            rows = await session.execute(
                sa.select(RunListing.asin, RunListing.item_id, RunListing.seller_username).where(
                    RunListing.run_id == uuid.UUID(run_id)
                )
            )
            return [(a, i, s) for a, i, s in rows]
    finally:
        await database.dispose()


def test_api_replicas_and_workers_hand_runs_over_on_sigterm_and_sigkill(
    env: dict[str, str], tmp_path: Path
) -> None:
    if "DATABASE_URL" not in env:
        pytest.skip("API replicas and workers share PostgreSQL; SQLite is one process")
    apis = [
        Server({**env, "INSTANCE_ID": f"api-{n}"}, tmp_path, f"api-{n}", "--role", "api")
        for n in (1, 2)
    ]
    workers = {
        f"worker-{n}": Worker({**env, "INSTANCE_ID": f"worker-{n}"}, tmp_path, f"worker-{n}")
        for n in (1, 2, 3)
    }
    try:
        for process in [*apis, *workers.values()]:
            wait_healthy(process.url, process.process, timeout=60)
        token = issue_token(
            make_settings(jwt_secret=SECRET), user_id=uuid.uuid4(), email="boss@example.com"
        )
        headers = {"Authorization": f"Bearer {token}"}
        org = httpx.post(f"{apis[0].url}/orgs", json={"name": "Acme"}, headers=headers)
        assert org.status_code == 201, org.text
        body = {"category_ids": CATEGORIES, "products_per_category": PER_CATEGORY}
        run: dict[str, Any] = httpx.post(
            f"{apis[0].url}/collection/runs", json=body, headers=headers
        ).json()
        started = httpx.post(f"{apis[1].url}/collection/runs/{run['id']}/start", headers=headers)
        assert started.status_code == 200, started.text

        # executed by a worker, never by an API-only replica
        _, first, searched = _wait(env, run["id"], lambda _s, _o, n: n >= 5, within=30)
        assert first in workers

        signalled = time.monotonic()
        workers[first].process.send_signal(signal.SIGTERM)
        _, second, searched = _wait(
            env, run["id"], lambda _s, owner, _n: owner not in (None, first), within=30
        )
        sigterm_takeover = time.monotonic() - signalled
        assert workers[first].process.wait(timeout=15) == 0

        # the next worker goes on from the checkpoint; then it dies without a word
        _wait(env, run["id"], lambda _s, _o, n: n >= searched + 3, within=30)
        assert second in workers
        killed = time.monotonic()
        workers[second].process.send_signal(signal.SIGKILL)
        workers[second].process.wait(timeout=10)
        _, third, _ = _wait(
            env, run["id"], lambda _s, owner, _n: owner not in (None, second), within=30
        )
        sigkill_takeover = time.monotonic() - killed
        assert third in workers
        assert third not in (first, second)

        status, _, searched = _wait(env, run["id"], lambda s, _o, _n: s != "running", within=60)
    finally:
        for process in [*apis, *workers.values()]:
            process.stop()

    assert (status, searched) == ("completed", len(CATEGORIES) * PER_CATEGORY)
    # SIGTERM: at once, at a checkpoint; SIGKILL: once the lease expired (renewed every
    # third of it, so at least two thirds of it after the kill)
    assert sigterm_takeover < LEASE_SECONDS / 2, sigterm_takeover
    assert sigkill_takeover >= LEASE_SECONDS * 2 / 3 - 0.5, sigkill_takeover
    stored = asyncio.run(_stored(env, run["id"]))
    assert len(stored) == len(set(stored)), "a run handed over must not duplicate rows"
    expected = expected_listings(CATEGORIES, PER_CATEGORY, 20, as_of=created_at(run))
    assert set(stored) == asyncio.run(expected)

    assert "draining: 1 run released to other instances (1 at a checkpoint)" in (
        workers[first].logs()
    )
    assert f"run {run['id']}: taken over by {second}" in workers[second].logs()
    assert f"run {run['id']}: taken over by {third}" in workers[third].logs()
    assert "lease lost" not in workers[third].logs()  # not even as it finished
    for api in apis:
        logs = api.logs()
        assert "API-only instance" in logs
        assert "app.runs.executor" not in logs  # no run was executed there
        assert "app.runs.pipeline" not in logs
    for process in [*apis, *workers.values()]:
        assert "Traceback" not in process.logs(), process.logs()
