"""A run's checkpoints, written in groups: each done unit of work (a category's best
sellers, a product's eBay listings), its results and the run's counters in one transaction
fenced by the run's lease, together with the units that got done while the previous group
was being written.

A unit is checkpointed once and atomically with its results, as if alone: the group's
transaction writes all of its units or none. What a group saves is the per-transaction work
(BEGIN and COMMIT, the fence) and the statements that take every row of the group at once
(marking products searched, their listings, the sellers' upsert); units done one at a time
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

from app.core.database import dialect_insert
from app.runs import sellers
from app.tables import RunCategory, RunListing, RunProduct, RunStatus

ItemT = TypeVar("ItemT")

_CATEGORIES = RunCategory.metadata.tables[RunCategory.__tablename__]
_PRODUCTS = RunProduct.metadata.tables[RunProduct.__tablename__]
_LISTINGS = RunListing.metadata.tables[RunListing.__tablename__]

# A category is collected once: marking it done is what makes its products the run's.
_MARK_COLLECTED = (
    sa.update(_CATEGORIES)
    .where(
        _CATEGORIES.c.run_id == sa.bindparam("of_run"),
        _CATEGORIES.c.position == sa.bindparam("at_position"),
        _CATEGORIES.c.done_at.is_(None),
    )
    .values(
        done_at=sa.bindparam("now", type_=_CATEGORIES.c.done_at.type),
        products_found=sa.bindparam("found", type_=_CATEGORIES.c.products_found.type),
    )
)

_INSERT_LISTINGS = sa.insert(_LISTINGS)


@dataclass(frozen=True, slots=True)
class CollectedCategory:
    """A category whose best sellers came back, as rows of `run_products`."""

    category: RunCategory
    product_rows: list[dict[str, Any]]


async def write_collected(
    connection: AsyncConnection, collected: Sequence[CollectedCategory], now: datetime
) -> tuple[list[bool], dict[str, int]]:
    """Mark `collected` categories (of one run) done and write the products of those that
    were not yet (an earlier holder of the lease may have); which ones were, and the run's
    counters to add. The caller fences the transaction with the lease."""
    marked: list[bool] = []
    for item in collected:
        result = await connection.execute(
            _MARK_COLLECTED,
            {
                "of_run": item.category.run_id,
                "at_position": item.category.position,
                "now": now,
                "found": len(item.product_rows),
            },
        )
        marked.append(result.rowcount == 1)
    written = [item for item, new in zip(collected, marked, strict=True) if new]
    # Categories can share products: the first to list one keeps it. In key order, so that
    # writers of the same products (a run's holder and a zombie) lock them in one order
    # and cannot deadlock.
    product_rows = sorted(
        (row for item in written for row in item.product_rows), key=lambda row: row["asin"]
    )
    inserted = 0
    if product_rows:
        result = await connection.execute(_insert_products(connection.dialect.name), product_rows)
        inserted = len(result.all())
    return marked, {"categories_done": len(written), "products_found": inserted}


@cache
def _insert_products(dialect: str) -> sa.Insert:
    """Insert products a run does not have yet; the ASINs it inserted."""
    insert = dialect_insert(dialect, _PRODUCTS)
    return insert.on_conflict_do_nothing(index_elements=["run_id", "asin"]).returning(
        _PRODUCTS.c.asin
    )


@dataclass(frozen=True, slots=True)
class SearchedProduct:
    """A product whose eBay search ended, with its listings as rows of `run_listings`
    (distinct item ids)."""

    product: RunProduct
    listing_rows: list[dict[str, Any]]


async def write_searched(
    connection: AsyncConnection, searched: Sequence[SearchedProduct], now: datetime
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
