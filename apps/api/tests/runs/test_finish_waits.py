"""Finishing a run holds no lock others wait on while it ranks: its row is updated last in
the finishing transaction, so a fire of the organization's schedule (which creates a run
against the one-active-run index) and a pause of the run answer at once, not when the
ranking of a large run is done. On PostgreSQL; SQLite has one writer, whom every write
waits for whatever the order."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.database import SYSTEM, Database, acting_as
from app.directory_tables import DirectorySeller
from app.runs import pipeline
from app.runs.lifecycle import RunSpec
from app.tables import RunSeller
from tests.helpers.actors import Actor
from tests.helpers.runs import create_run, finished, start, wait_for

pytestmark = pytest.mark.usefixtures("postgres_only")


@pytest.fixture
def postgres_only(database: Database) -> None:
    if database.dialect != "postgresql":
        pytest.skip("SQLite has one writer: a write waits for the finishing one in any order")


class HeldRanking:
    """`sellers.finish` that waits, inside the finishing transaction, until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ranking = asyncio.Event()
        self.release = asyncio.Event()
        finish = pipeline.sellers.finish

        async def held(session: AsyncSession, run_id: uuid.UUID) -> None:
            await finish(session, run_id)
            self.ranking.set()
            await self.release.wait()

        monkeypatch.setattr(pipeline.sellers, "finish", held)


async def running_into_its_finish(
    client: httpx.AsyncClient, admin: Actor, held: HeldRanking
) -> dict[str, Any]:
    """A run started and held in its finishing transaction, its sellers ranked there."""
    run = await create_run(client, admin, ["172282"])
    assert (await start(client, admin, run["id"])).status_code == 200
    await asyncio.wait_for(held.ranking.wait(), timeout=30)
    return run


@pytest.fixture
async def held(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[HeldRanking]:
    ranking = HeldRanking(monkeypatch)
    yield ranking
    ranking.release.set()


async def test_a_fire_of_the_organization_does_not_wait_for_a_run_being_finished(
    client: httpx.AsyncClient, admin: Actor, app: FastAPI, database: Database, held: HeldRanking
) -> None:
    run = await running_into_its_finish(client, admin, held)
    assert admin.org_id is not None
    spec = RunSpec(org_id=admin.org_id, name="Fired", category_ids=["172282"], created_by=None)

    async def fire() -> list[uuid.UUID | None]:
        with acting_as(SYSTEM):
            async with database.transaction() as session:
                return await app.state.instance.runs.create_runs(session, [spec])

    # The run still counts as active (its end is not committed): the fire finds it, at once.
    assert await asyncio.wait_for(fire(), timeout=5) == [None]
    held.release.set()
    done = await wait_for(client, admin, run["id"], finished)
    assert done["status"] == "completed"


async def test_a_run_paused_while_it_is_finished_is_paused_with_nothing_of_the_finish(
    client: httpx.AsyncClient, admin: Actor, database: Database, held: HeldRanking
) -> None:
    run = await running_into_its_finish(client, admin, held)

    pause = client.post(f"/collection/runs/{run['id']}/pause", headers=admin.headers)
    response = await asyncio.wait_for(pause, timeout=5)
    assert response.status_code == 200, response.text
    held.release.set()

    def settled(body: dict[str, Any]) -> bool:
        return body["status"] == "paused"

    paused = await wait_for(client, admin, run["id"], settled)
    assert paused["finished_at"] is None
    with acting_as(SYSTEM):
        async with database.read() as session:
            ranked = await session.scalar(
                sa.select(sa.func.count())
                .select_from(RunSeller)
                .where(RunSeller.run_id == uuid.UUID(run["id"]), RunSeller.rank.is_not(None))
            )
            sellers = await session.scalar(
                sa.select(sa.func.count())
                .select_from(RunSeller)
                .where(RunSeller.run_id == uuid.UUID(run["id"]))
            )
            directory = await session.scalar(
                sa.select(sa.func.count())
                .select_from(DirectorySeller)
                .where(DirectorySeller.org_id == admin.org_id)
            )
    assert sellers  # its results are kept ...
    assert (ranked, directory) == (0, 0)  # ... and the finish's ranking and directory undone
