"""Runs and the instances that execute them: a run whose owner died is taken over, a live
lease of another instance is respected, a checkpoint without the lease writes nothing, and
an executor runs at most its capacity."""

from __future__ import annotations

import uuid

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app.core.database import Database
from app.runs.executor import RunExecutor
from app.runs.leases import Lease, LeaseLostError
from app.runs.pipeline import Pipeline
from app.tables import CollectionRun, RunCategory, RunProduct
from tests.helpers.actors import Actor
from tests.helpers.runs import (
    create_run,
    created_at,
    expected_listings,
    finished,
    orphan,
    stored_listings,
    wait_for,
)

# --- leases: takeover and fencing ---------------------------------------------------------


async def test_second_instance_takes_over_run_whose_owner_died(
    client: httpx.AsyncClient, admin: Actor, database: Database, app: FastAPI
) -> None:
    run = await create_run(client, admin, ["172282", "541966"])
    await orphan(database, run["id"], owner="dead-host:1", expired=True)
    executor: RunExecutor = app.state.instance.executor
    await executor.sweep()
    done = await wait_for(client, admin, run["id"], finished)
    assert done["status"] == "completed"
    assert set(await stored_listings(database, run["id"])) == await expected_listings(
        ["172282", "541966"], 5, 20, as_of=created_at(run)
    )


async def test_live_lease_of_another_instance_is_respected(
    client: httpx.AsyncClient, admin: Actor, database: Database, app: FastAPI
) -> None:
    run = await create_run(client, admin, ["172282"])
    await orphan(database, run["id"], owner="alive-host:1", expired=False)
    executor: RunExecutor = app.state.instance.executor
    await executor.sweep()
    assert uuid.UUID(run["id"]) not in executor.running
    assert not await executor.submit(uuid.UUID(run["id"]))
    current = (await client.get(f"/collection/runs/{run['id']}", headers=admin.headers)).json()
    assert current["progress"]["categories_done"] == 0


async def test_checkpoint_without_the_lease_writes_nothing(
    client: httpx.AsyncClient, admin: Actor, database: Database, app: FastAPI
) -> None:
    run = await create_run(client, admin, ["172282"])
    await orphan(database, run["id"], owner="other-host:1", expired=False)
    service: Pipeline = app.state.instance.pipeline
    zombie = Lease(uuid.UUID(run["id"]), "zombie-host:9")
    async with database.read() as session:
        row = await session.get_one(CollectionRun, uuid.UUID(run["id"]))
    with pytest.raises(LeaseLostError):
        await service.run_amazon_collection(zombie, row)
    current = (await client.get(f"/collection/runs/{run['id']}", headers=admin.headers)).json()
    assert current["progress"]["categories_done"] == 0
    assert current["progress"]["products_found"] == 0
    async with database.read() as session:  # nor rows the checkpoint would have written
        run_id = uuid.UUID(run["id"])
        products = await session.scalar(
            sa.select(sa.func.count()).where(RunProduct.run_id == run_id)
        )
        done = await session.scalar(
            sa.select(sa.func.count()).where(
                RunCategory.run_id == run_id, RunCategory.done_at.is_not(None)
            )
        )
    assert (products, done) == (0, 0)


async def test_executor_runs_at_most_its_capacity(
    client: httpx.AsyncClient, admin: Actor, database: Database, app: FastAPI
) -> None:
    run = await create_run(client, admin, ["172282"])
    await orphan(database, run["id"], owner="dead-host:1", expired=True)  # free to take
    run_id = uuid.UUID(run["id"])
    executor: RunExecutor = app.state.instance.executor
    capacity = executor.max_concurrent
    executor.max_concurrent = 0  # its periodic sweep cannot take the run either
    try:
        assert not executor.has_capacity
        assert not await executor.submit(run_id)
        async with database.read() as session:
            owner = await session.scalar(
                sa.select(CollectionRun.lease_owner).where(CollectionRun.id == run_id)
            )
        assert owner == "dead-host:1"  # not claimed
    finally:
        executor.max_concurrent = capacity
    assert await executor.submit(run_id)  # the same run, with room for it
    done = await wait_for(client, admin, run["id"], finished)
    assert done["status"] == "completed"
