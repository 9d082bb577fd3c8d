"""Runs through the API: create, start, wait for a state; the rows an uninterrupted run of
the sample providers stores (the market of the day it was created), to compare a run's
stored rows with; a run made to look as if another instance had started it; and an eBay
provider whose searches wait for the test's permission."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from app.core.clock import utcnow
from app.core.database import Database
from app.providers.base import Listing, Product
from app.providers.sample import SampleAmazonProvider, SampleEbayProvider
from app.runs.executor import RunExecutor
from app.tables import CollectionRun, RunListing, RunStatus
from tests.helpers.actors import Actor

TERMINAL = {"completed", "failed", "cancelled"}


class GatedEbay:
    """A sample eBay provider whose searches wait until the test allows them, one by one."""

    name = "gated"

    def __init__(self) -> None:
        self.inner = SampleEbayProvider(latency_ms=0)
        self.permits = asyncio.Semaphore(0)
        self.calls = 0

    def allow(self, searches: int) -> None:
        for _ in range(searches):
            self.permits.release()

    async def search(
        self, product: Product, limit: int, *, as_of: datetime | None = None
    ) -> list[Listing]:
        self.calls += 1
        await self.permits.acquire()
        return await self.inner.search(product, limit, as_of=as_of)


async def wait_for(
    client: httpx.AsyncClient,
    actor: Actor,
    run_id: str,
    predicate: Any,
    within: float = 30.0,
) -> dict[str, Any]:
    """Poll the run until `predicate(run)` holds (for at most `within` seconds)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        run: dict[str, Any] = (
            await client.get(f"/collection/runs/{run_id}", headers=actor.headers)
        ).json()
        if predicate(run):
            return run
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"run never reached the expected state: {run}")
        await asyncio.sleep(0.02)


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Wait, in small steps, until `condition()` holds (for at most `within` seconds)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        if condition():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not true within {within} s: {condition}")
        await asyncio.sleep(0.005)


async def executed_here(executor: RunExecutor, run_id: str) -> None:
    """Wait for this instance's task of the run to end: it commits the final status, then
    runs the finish hooks (mail), and only then leaves `executor.running`."""
    task = executor._tasks.get(uuid.UUID(run_id))
    if task is not None:
        await asyncio.wait({task}, timeout=30)


def finished(run: dict[str, Any]) -> bool:
    return run["status"] in TERMINAL


async def create_run(
    client: httpx.AsyncClient, actor: Actor, categories: list[str], **extra: Any
) -> dict[str, Any]:
    body = {"category_ids": categories, "products_per_category": 5, **extra}
    response = await client.post("/collection/runs", json=body, headers=actor.headers)
    assert response.status_code == 201, response.text
    run: dict[str, Any] = response.json()
    return run


async def start(client: httpx.AsyncClient, actor: Actor, run_id: str) -> httpx.Response:
    return await client.post(f"/collection/runs/{run_id}/start", headers=actor.headers)


def created_at(run: dict[str, Any]) -> datetime:
    """When the run (as the API shows it) was created: the market day it reads."""
    return datetime.fromisoformat(run["created_at"])


async def expected_listings(
    categories: list[str],
    products_per_category: int,
    listings_per_product: int,
    *,
    as_of: datetime,
) -> set[tuple[str, str, str]]:
    """What an uninterrupted run created at `as_of` must store: computed straight from the
    sample providers (their market of that day)."""
    amazon, ebay = SampleAmazonProvider(latency_ms=0), SampleEbayProvider(latency_ms=0)
    rows: set[tuple[str, str, str]] = set()
    seen: set[str] = set()
    for category in categories:
        for product in await amazon.best_sellers(category, products_per_category, as_of=as_of):
            if product.asin in seen:
                continue
            seen.add(product.asin)
            for listing in await ebay.search(product, listings_per_product, as_of=as_of):
                rows.add((product.asin, listing.item_id, listing.seller_username))
    return rows


async def stored_listings(database: Database, run_id: str) -> list[tuple[str, str, str]]:
    async with database.read() as session:
        rows = await session.execute(
            sa.select(RunListing.asin, RunListing.item_id, RunListing.seller_username).where(
                RunListing.run_id == uuid.UUID(run_id)
            )
        )
        return [(a, i, s) for a, i, s in rows]


async def orphan(database: Database, run_id: str, owner: str, expired: bool) -> None:
    """Make the run look like another instance started it (and maybe died)."""
    offset = timedelta(seconds=-5 if expired else 300)
    async with database.transaction() as session:
        await session.execute(
            sa.update(CollectionRun)
            .where(CollectionRun.id == uuid.UUID(run_id))
            .values(
                status=RunStatus.RUNNING,
                started_at=utcnow(),
                lease_owner=owner,
                lease_expires_at=utcnow() + offset,
            )
        )


async def finished_run(client: httpx.AsyncClient, actor: Actor, body: dict[str, Any]) -> str:
    """The id of a run of `body` (POST /collection/runs) started and run to completion."""
    response = await client.post("/collection/runs", json=body, headers=actor.headers)
    assert response.status_code == 201, response.text
    run_id: str = response.json()["id"]
    assert (await start(client, actor, run_id)).status_code == 200
    run = await wait_for(client, actor, run_id, finished)
    assert run["status"] == "completed", run
    return run_id
