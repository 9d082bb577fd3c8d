"""The eBay phase's checkpoints, written in groups: each searched product's mark, listings
and sellers' figures, for every product whose search ended while the previous group was
being written, in one transaction with the run's counters, fenced by the run's lease.

A product is checkpointed once and atomically with its results, as if alone: the group's
transaction writes all of its products or none. What a group saves is the per-transaction
work (a connection, BEGIN and COMMIT, the fence) and the statements that take every row
of the group at once (the listings, the sellers' upsert); products searched one at a time
make groups of one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from app.runs import sellers
from app.tables import RunListing, RunProduct, RunStatus

ItemT = TypeVar("ItemT")

_PRODUCTS = RunProduct.metadata.tables[RunProduct.__tablename__]
_LISTINGS = RunListing.metadata.tables[RunListing.__tablename__]

_INSERT_LISTINGS = sa.insert(_LISTINGS)


@dataclass(frozen=True, slots=True)
class SearchedProduct:
    """A product whose eBay search ended, with its listings as rows of `run_listings`
    (distinct item ids)."""

    product: RunProduct
    listing_rows: list[dict[str, Any]]


async def write_searched(
    connection: AsyncConnection, searched: Sequence[SearchedProduct], *, now: datetime
) -> tuple[list[bool], dict[str, int]]:
    """Mark `searched` products (of one run) searched and write the results of those that
    were not yet (an earlier holder of the lease may have); which ones were, and the run's
    counters to add. The caller fences the transaction with the lease."""
    parameters: dict[str, Any] = {"of_run": searched[0].product.run_id, "now": now}
    for position, item in enumerate(searched):
        parameters[f"asin_{position}"] = item.product.asin
        parameters[f"found_{position}"] = len(item.listing_rows)
    result = await connection.execute(_mark_searched(len(searched)), parameters)
    newly_marked = set(result.scalars())
    marked = [item.product.asin in newly_marked for item in searched]
    written = [item for item, new in zip(searched, marked, strict=True) if new]
    # The listings of a product are written with its mark only, so all of them are new.
    listing_rows = [row for item in written for row in item.listing_rows]
    if listing_rows:
        await connection.execute(_INSERT_LISTINGS, listing_rows)
    new_sellers = 0
    if written:
        new_sellers = await sellers.record_products(
            connection, parameters["of_run"], [item.listing_rows for item in written]
        )
    increments = {
        "products_searched": len(written),
        "listings_found": len(listing_rows),
        "sellers_found": new_sellers,
    }
    return marked, increments


@cache
def _mark_searched(count: int) -> sa.UpdateBase:
    """Mark `count` products of a run searched, each with its number of listings, unless
    they are already (a product is searched once: its mark is what makes its results the
    run's, exactly once); the ASINs it marked. Parameters: `of_run`, `now`, and `asin_<i>`
    and `found_<i>` for i < `count`."""
    product = _PRODUCTS.c
    asins = [sa.bindparam(f"asin_{i}", type_=product.asin.type) for i in range(count)]
    counts = [sa.bindparam(f"found_{i}", type_=product.listings_found.type) for i in range(count)]
    found = sa.case(
        *((product.asin == asin, n) for asin, n in zip(asins, counts, strict=True)),
        else_=product.listings_found,
    )
    return (
        sa.update(_PRODUCTS)
        .where(
            product.run_id == sa.bindparam("of_run", type_=product.run_id.type),
            product.asin.in_(asins),
            product.searched_at.is_(None),
        )
        .values(
            searched_at=sa.bindparam("now", type_=product.searched_at.type), listings_found=found
        )
        .returning(product.asin)
    )


@dataclass(eq=False, slots=True)
class _Entry(Generic[ItemT]):
    item: ItemT
    written: bool = False
    status: RunStatus | None = None
    error: Exception | None = None


@dataclass(eq=False, slots=True)
class GroupCommit(Generic[ItemT]):
    """Writes items one group at a time: the items submitted while a group is being
    written make the next one, written by the first of their submitters to get the turn.

    That writer first lingers `linger` seconds, so that the items submitted just after
    its own (searches started together end together) join its group rather than make
    groups of their own: a short delay of each checkpoint for far fewer transactions
    (PostgreSQL's `commit_delay`).

    `write` takes a group and returns each item's checkpoint status, in order (as
    `Pipeline._checkpoint` does). When it raises, every item of the group gets the error.
    A submitter cancelled while writing leaves the other items of its group to the next
    writer (its transaction rolled back).
    """

    write: Callable[[list[ItemT]], Awaitable[list[RunStatus | None]]]
    linger: float = 0.0
    _waiting: list[_Entry[ItemT]] = field(default_factory=list)
    _turn: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def submit(self, item: ItemT) -> RunStatus | None:
        """Write `item`, with whatever else is waiting; its checkpoint status."""
        entry: _Entry[ItemT] = _Entry(item)
        self._waiting.append(entry)
        async with self._turn:
            if not entry.written:
                await asyncio.sleep(self.linger)
                group, self._waiting = self._waiting, []
                try:
                    statuses = await self.write([waiting.item for waiting in group])
                except Exception as exc:
                    for waiting in group:
                        waiting.written, waiting.error = True, exc
                except BaseException:
                    self._waiting[:0] = [waiting for waiting in group if waiting is not entry]
                    raise
                else:
                    for waiting, status in zip(group, statuses, strict=True):
                        waiting.written, waiting.status = True, status
        if entry.error is not None:
            raise entry.error
        return entry.status
