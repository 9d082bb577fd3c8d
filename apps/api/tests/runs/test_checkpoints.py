"""Checkpoints written in groups: what is submitted during a write makes the next group,
a failed write fails its own group only, a cancelled writer leaves the rest of its group
to the next; and a product an earlier holder of the lease checkpointed while its search
was in flight is not written twice, while the rest of its group is."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app.core.clock import utcnow
from app.core.database import Database
from app.providers.base import Listing, Product
from app.providers.sample import SampleEbayProvider
from app.runs.checkpoints import GroupCommit
from app.runs.leases import Lease
from app.runs.pipeline import Pipeline
from app.tables import CollectionRun, RunProduct, RunSeller, RunStatus
from tests.helpers.actors import Actor
from tests.helpers.runs import create_run, created_at, expected_listings, orphan, stored_listings

# --- GroupCommit ------------------------------------------------------------------------------


class Writes:
    """A group writer that records its groups and can be held in the middle of a write."""

    def __init__(self, failing: str | None = None) -> None:
        self.groups: list[list[str]] = []
        self.writing = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()
        self.failing = failing

    async def __call__(self, items: list[str]) -> list[RunStatus | None]:
        self.groups.append(items)
        self.writing.set()
        await self.release.wait()
        if self.failing in items:
            raise RuntimeError(f"{self.failing} cannot be written")
        return [RunStatus.RUNNING if item.startswith("new") else None for item in items]


async def started(group_commit: GroupCommit[str], item: str) -> asyncio.Task[RunStatus | None]:
    """`item` submitted in a task of its own, which has run up to its first wait."""
    task = asyncio.create_task(group_commit.submit(item))
    await asyncio.sleep(0)
    return task


async def test_what_is_submitted_during_a_write_is_written_together_next() -> None:
    writes = Writes()
    group_commit = GroupCommit(writes)
    writes.release.clear()
    first = await started(group_commit, "new-a")
    others = [await started(group_commit, item) for item in ("new-b", "done-c", "new-d")]
    writes.release.set()
    assert await first is RunStatus.RUNNING
    assert [await task for task in others] == [RunStatus.RUNNING, None, RunStatus.RUNNING]
    assert writes.groups == [["new-a"], ["new-b", "done-c", "new-d"]]


async def test_what_is_submitted_while_the_writer_lingers_joins_its_group() -> None:
    writes = Writes()
    group_commit = GroupCommit(writes, linger=0.05)
    tasks = [await started(group_commit, item) for item in ("new-a", "new-b", "new-c")]
    assert [await task for task in tasks] == [RunStatus.RUNNING] * 3
    assert writes.groups == [["new-a", "new-b", "new-c"]]


async def test_a_failed_write_fails_its_own_group_only() -> None:
    writes = Writes(failing="new-c")
    group_commit = GroupCommit(writes)
    writes.release.clear()
    first = await started(group_commit, "new-a")
    failing = [await started(group_commit, item) for item in ("new-b", "new-c")]
    writes.release.set()
    assert await first is RunStatus.RUNNING
    for task in failing:
        with pytest.raises(RuntimeError, match="new-c cannot be written"):
            await task
    assert await group_commit.submit("new-d") is RunStatus.RUNNING
    assert writes.groups == [["new-a"], ["new-b", "new-c"], ["new-d"]]


async def test_a_cancelled_writer_leaves_the_rest_of_its_group_to_the_next() -> None:
    writes = Writes()
    group_commit = GroupCommit(writes, linger=0.05)
    writes.release.clear()
    writer = await started(group_commit, "new-a")
    other = await started(group_commit, "new-b")  # joins while the writer lingers
    await writes.writing.wait()
    writer.cancel()  # its transaction would roll back
    writes.release.set()
    assert await other is RunStatus.RUNNING
    with pytest.raises(asyncio.CancelledError):
        await writer
    assert writes.groups == [["new-a", "new-b"], ["new-b"]]


# --- a product checkpointed meanwhile by an earlier holder of the lease ------------------------


class EarlierHolder:
    """The sample eBay provider, except that while it searches `asin` an earlier holder of
    the run's lease checkpoints that product (with no listings)."""

    name = "sample"

    def __init__(self, database: Database, run_id: uuid.UUID, asin: str) -> None:
        self.inner = SampleEbayProvider(latency_ms=0)
        self.database = database
        self.run_id = run_id
        self.asin = asin

    async def search(
        self, product: Product, limit: int, *, as_of: datetime | None = None
    ) -> list[Listing]:
        if product.asin == self.asin:
            async with self.database.transaction() as session:
                await session.execute(
                    sa.update(RunProduct)
                    .where(RunProduct.run_id == self.run_id, RunProduct.asin == self.asin)
                    .values(searched_at=utcnow(), listings_found=0)
                )
        return await self.inner.search(product, limit, as_of=as_of)


@pytest.fixture
def pipeline(app: FastAPI) -> Iterator[Pipeline]:
    service: Pipeline = app.state.instance.pipeline
    original = service.ebay
    yield service
    service.ebay = original


async def test_a_product_checkpointed_meanwhile_is_not_written_again(
    client: httpx.AsyncClient, admin: Actor, database: Database, pipeline: Pipeline
) -> None:
    run = await create_run(client, admin, ["172282"], products_per_category=8)
    run_id = uuid.UUID(run["id"])
    await orphan(database, run["id"], owner="test-host:1", expired=False)  # ours, not the app's
    lease = Lease(run_id, "test-host:1")
    async with database.read() as session:
        row = await session.get_one(CollectionRun, run_id)
    await pipeline.run_amazon_collection(lease, row)
    async with database.read() as session:
        asins = list(
            await session.scalars(
                sa.select(RunProduct.asin)
                .where(RunProduct.run_id == run_id)
                .order_by(RunProduct.sales_rank)
            )
        )
    taken = asins[3]
    pipeline.ebay = EarlierHolder(database, run_id, taken)

    await pipeline.run_ebay_seller_search(lease, row)

    stored = await stored_listings(database, run["id"])
    expected = await expected_listings(["172282"], 8, 20, as_of=created_at(run))
    assert len(stored) == len(set(stored))
    assert set(stored) == {listing for listing in expected if listing[0] != taken}
    async with database.read() as session:
        done = await session.get_one(CollectionRun, run_id, populate_existing=True)
        figures = {
            username: (products, listings)
            for username, products, listings in await session.execute(
                sa.select(RunSeller.username, RunSeller.products, RunSeller.listings).where(
                    RunSeller.run_id == run_id
                )
            )
        }
    assert done.products_searched == len(asins) - 1
    assert done.listings_found == len(stored)
    assert done.sellers_found == len(figures)
    listings_of = Counter(seller for _, _, seller in stored)
    products_of = Counter(seller for _, seller in {(asin, seller) for asin, _, seller in stored})
    assert figures == {seller: (products_of[seller], listings_of[seller]) for seller in listings_of}
