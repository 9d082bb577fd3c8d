"""Pause and cancel of a run that is executing: `pausing` / `cancelling` while the provider
calls in flight finish and are checkpointed, then `paused` / `cancelled`, after which nothing
about the run changes; withdrawing a pause; settling runs whose executor died."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app.core.clock import utcnow
from app.core.database import Database
from app.runs.executor import RunExecutor
from app.runs.pipeline import Pipeline
from app.tables import CollectionRun, RunCategory, RunListing, RunProduct, RunSeller, RunStatus
from tests.helpers.actors import Actor
from tests.helpers.runs import (
    GatedEbay,
    create_run,
    created_at,
    expected_listings,
    finished,
    start,
    stored_listings,
    wait_for,
)


@pytest.fixture
def gated(app: FastAPI) -> AsyncIterator[GatedEbay]:
    service: Pipeline = app.state.instance.pipeline
    original = service.ebay
    provider = GatedEbay()
    service.ebay = provider
    yield provider  # type: ignore[misc]
    provider.allow(10_000)
    service.ebay = original


@pytest.fixture
def ended(app: FastAPI) -> Iterator[list[uuid.UUID]]:
    """The runs the executor announces as ended (what mails a scheduled run's summary)."""
    executor: RunExecutor = app.state.instance.executor
    runs: list[uuid.UUID] = []

    async def record(run_id: uuid.UUID) -> None:
        runs.append(run_id)

    executor.on_finished.append(record)
    yield runs
    executor.on_finished.remove(record)


async def snapshot(database: Database, run_id: str) -> dict[str, Any]:
    """Every column of the run and every result row it has, to compare later."""
    key = uuid.UUID(run_id)
    async with database.read() as session:
        runs = CollectionRun.__table__
        run = (await session.execute(sa.select(runs).where(runs.c.id == key))).mappings().one()
        rows: dict[str, Any] = {"run": dict(run)}
        for table in (RunCategory, RunProduct, RunListing, RunSeller):
            result = await session.execute(
                sa.select(table.__table__).where(table.__table__.c.run_id == key)
            )
            rows[table.__tablename__] = sorted(tuple(map(str, r)) for r in result)
    return rows


async def executing_stopped(
    executor: RunExecutor, run_id: str, client: httpx.AsyncClient, admin: Actor
) -> None:
    """Wait until this instance no longer executes the run."""
    await wait_for(client, admin, run_id, lambda _: uuid.UUID(run_id) not in executor.running)


async def in_flight(
    client: httpx.AsyncClient, admin: Actor, gated: GatedEbay, run_id: str, done: int
) -> int:
    """Let `done` searches finish; return how many more are then blocked in flight."""
    await wait_for(client, admin, run_id, lambda r: r["phase"] == "ebay")
    gated.allow(done)
    await wait_for(client, admin, run_id, lambda r: r["progress"]["products_searched"] == done)
    await wait_for(client, admin, run_id, lambda _: gated.calls > done)
    return gated.calls - done


@pytest.mark.parametrize(
    ("action", "stopping", "final"),
    [
        ("pause", "pausing", "paused"),
        ("cancel", "cancelling", "cancelled"),
    ],
)
async def test_in_flight_calls_are_kept_and_nothing_changes_after_the_final_status(
    client: httpx.AsyncClient,
    admin: Actor,
    gated: GatedEbay,
    database: Database,
    app: FastAPI,
    ended: list[uuid.UUID],
    action: str,
    stopping: str,
    final: str,
) -> None:
    run = await create_run(client, admin, ["172282", "541966"], products_per_category=10)
    await start(client, admin, run["id"])
    flying = await in_flight(client, admin, gated, run["id"], 3)
    calls_when_asked = gated.calls

    response = await client.post(f"/collection/runs/{run['id']}/{action}", headers=admin.headers)
    assert response.status_code == 200, response.text
    # What a reader sees the moment the run reads final must hold from then on.
    frozen = await snapshot(database, run["id"]) if response.json()["status"] == final else None

    gated.allow(10_000)  # the searches in flight finish; no new one may start
    settled = await wait_for(client, admin, run["id"], lambda r: r["status"] != stopping)
    assert settled["status"] == final
    frozen = frozen or await snapshot(database, run["id"])
    executor: RunExecutor = app.state.instance.executor
    await executing_stopped(executor, run["id"], client, admin)
    await executor.heartbeat()
    await executor.sweep()
    assert await snapshot(database, run["id"]) == frozen  # not one row of it changed

    assert response.json()["status"] == stopping  # while searches were in flight
    assert response.json()["progress"]["products_searched"] == 3
    assert gated.calls == calls_when_asked  # nothing started after the request
    # the calls in flight were paid for: their results are kept
    assert settled["progress"]["products_searched"] == 3 + flying
    assert frozen["run"]["lease_owner"] is None
    assert ended == ([uuid.UUID(run["id"])] if final == "cancelled" else [])


async def test_pause_then_resume_finishes_with_exactly_the_uninterrupted_rows(
    client: httpx.AsyncClient, admin: Actor, gated: GatedEbay, database: Database, app: FastAPI
) -> None:
    run = await create_run(client, admin, ["172282", "541966"], products_per_category=10)
    await start(client, admin, run["id"])
    await in_flight(client, admin, gated, run["id"], 3)
    paused = await client.post(f"/collection/runs/{run['id']}/pause", headers=admin.headers)
    assert paused.json()["status"] == "pausing"
    gated.allow(10_000)
    await wait_for(client, admin, run["id"], lambda r: r["status"] == "paused")
    await executing_stopped(app.state.instance.executor, run["id"], client, admin)

    resumed = await client.post(f"/collection/runs/{run['id']}/resume", headers=admin.headers)
    assert resumed.json()["status"] == "running"
    done = await wait_for(client, admin, run["id"], finished)
    assert done["status"] == "completed"
    expected = await expected_listings(["172282", "541966"], 10, 20, as_of=created_at(run))
    stored = await stored_listings(database, run["id"])
    assert len(stored) == len(set(stored))  # no duplicates
    assert set(stored) == expected
    assert done["progress"]["listings_found"] == len(expected)
    assert done["progress"]["products_searched"] == 20


async def test_resume_while_pausing_withdraws_the_pause(
    client: httpx.AsyncClient, admin: Actor, gated: GatedEbay, database: Database
) -> None:
    run = await create_run(client, admin, ["172282", "541966"], products_per_category=10)
    await start(client, admin, run["id"])
    await in_flight(client, admin, gated, run["id"], 3)
    pausing = await client.post(f"/collection/runs/{run['id']}/pause", headers=admin.headers)
    assert pausing.json()["status"] == "pausing"
    resumed = await client.post(f"/collection/runs/{run['id']}/resume", headers=admin.headers)
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["status"] == "running"
    gated.allow(10_000)
    done = await wait_for(client, admin, run["id"], finished)
    assert done["status"] == "completed"
    assert set(await stored_listings(database, run["id"])) == await expected_listings(
        ["172282", "541966"], 10, 20, as_of=created_at(run)
    )


async def test_a_stopping_run_is_active_and_can_still_be_cancelled(
    client: httpx.AsyncClient, admin: Actor, gated: GatedEbay
) -> None:
    run = await create_run(client, admin, ["172282"])
    await start(client, admin, run["id"])
    await in_flight(client, admin, gated, run["id"], 1)
    await client.post(f"/collection/runs/{run['id']}/pause", headers=admin.headers)

    second = await client.post(
        "/collection/runs", json={"category_ids": ["541966"]}, headers=admin.headers
    )
    assert second.status_code == 409
    assert f"run {run['id']} (pausing)" in second.json()["detail"]
    again = await client.post(f"/collection/runs/{run['id']}/pause", headers=admin.headers)
    assert again.status_code == 409
    assert "cannot pause a run that is pausing" in again.json()["detail"]

    cancelling = await client.post(f"/collection/runs/{run['id']}/cancel", headers=admin.headers)
    assert cancelling.json()["status"] == "cancelling"
    gated.allow(10_000)
    cancelled = await wait_for(client, admin, run["id"], finished)
    assert cancelled["status"] == "cancelled"
    assert cancelled["finished_at"] is not None


async def _leased(database: Database, run_id: str, status: RunStatus, *, expired: bool) -> None:
    """Make the run look like another instance executes it (or did, and died)."""
    offset = timedelta(seconds=-5 if expired else 300)
    async with database.transaction() as session:
        await session.execute(
            sa.update(CollectionRun)
            .where(CollectionRun.id == uuid.UUID(run_id))
            .values(
                status=status,
                phase="amazon",
                started_at=utcnow(),
                lease_owner="other-host:1",
                lease_expires_at=utcnow() + offset,
                resumes_at=utcnow() + timedelta(hours=1),
                waiting_for="eBay's daily call limit",
            )
        )


@pytest.mark.parametrize(
    ("stopping", "final"),
    [
        ("pausing", "paused"),
        ("cancelling", "cancelled"),
    ],
)
async def test_the_sweep_settles_a_stopping_run_whose_executor_died(
    client: httpx.AsyncClient,
    admin: Actor,
    database: Database,
    app: FastAPI,
    ended: list[uuid.UUID],
    stopping: str,
    final: str,
) -> None:
    alive = await create_run(client, admin, ["172282"])
    await _leased(database, alive["id"], RunStatus(stopping), expired=False)
    executor: RunExecutor = app.state.instance.executor
    await executor.sweep()
    current = (await client.get(f"/collection/runs/{alive['id']}", headers=admin.headers)).json()
    assert current["status"] == stopping  # its executor lives: it settles it itself

    await _leased(database, alive["id"], RunStatus(stopping), expired=True)
    await executor.sweep()
    settled = (await client.get(f"/collection/runs/{alive['id']}", headers=admin.headers)).json()
    assert settled["status"] == final
    assert (settled["resumes_at"], settled["waiting_for"]) == (None, None)
    assert (settled["finished_at"] is not None) == (final == "cancelled")
    assert uuid.UUID(alive["id"]) not in executor.running
    assert ended == ([uuid.UUID(alive["id"])] if final == "cancelled" else [])


@pytest.mark.parametrize(("action", "final"), [("pause", "paused"), ("cancel", "cancelled")])
async def test_a_run_nobody_executes_stops_at_once(
    client: httpx.AsyncClient,
    admin: Actor,
    database: Database,
    app: FastAPI,
    action: str,
    final: str,
) -> None:
    run = await create_run(client, admin, ["172282"])
    executor: RunExecutor = app.state.instance.executor
    capacity = executor.max_concurrent
    executor.max_concurrent = 0  # nobody takes the orphan over meanwhile
    try:
        await _leased(database, run["id"], RunStatus.RUNNING, expired=True)
        response = await client.post(
            f"/collection/runs/{run['id']}/{action}", headers=admin.headers
        )
    finally:
        executor.max_concurrent = capacity
    assert response.json()["status"] == final
    async with database.read() as session:
        owner = await session.scalar(
            sa.select(CollectionRun.lease_owner).where(CollectionRun.id == uuid.UUID(run["id"]))
        )
    assert owner is None  # the late instance's checkpoints are fenced out
