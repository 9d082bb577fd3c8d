"""What changed between two runs of the same categories: sellers that appeared or went,
sellers whose rank or product count moved, and listings whose price changed.

Seller sections read the runs' seller figures (`run_sellers`), never their listings: new
and gone sellers are anti-joins on its primary key, movers a join of the two rankings.
Price changes join the runs' listings on their primary key (product, eBay item).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, get_args

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.core.database import Database
from app.errors import ConflictError
from app.runs.results import AnySelect, check_kept, csv_chunk, money, previous_completed_run
from app.runs.sellers import ranking_order
from app.tables import CollectionRun, RunListing, RunSeller

Section = Literal["new_sellers", "gone_sellers", "movers", "price_changes"]
SECTIONS: tuple[Section, ...] = get_args(Section)
EXPORT_BATCH = 500


class NotComparableError(ConflictError):
    """The two runs cannot be compared."""


@dataclass(frozen=True, slots=True)
class SellerChange:
    """A seller in one or both runs: its figures in this run and in the run compared with
    (None where it is not in that run), and the change."""

    username: str
    rank: int | None
    products: int | None
    listings: int | None
    against_rank: int | None
    against_products: int | None
    against_listings: int | None

    @property
    def rank_change(self) -> int | None:
        """Places climbed (positive) or fallen since the run compared with."""
        if self.rank is None or self.against_rank is None:
            return None
        return self.against_rank - self.rank

    @property
    def products_change(self) -> int | None:
        if self.products is None or self.against_products is None:
            return None
        return self.products - self.against_products


@dataclass(frozen=True, slots=True)
class PriceChange:
    """A listing in both runs whose price differs."""

    asin: str
    item_id: str
    username: str
    title: str
    old_price: Decimal
    new_price: Decimal
    currency: str

    @property
    def change(self) -> Decimal:
        return self.new_price - self.old_price


@dataclass(frozen=True, slots=True)
class Summary:
    new_sellers: int
    gone_sellers: int
    movers: int
    unchanged_sellers: int
    price_changes: int


async def run_to_compare(
    session: AsyncSession, run: CollectionRun, against: CollectionRun | None
) -> CollectionRun:
    """`against` (already read within the organization), or the previous completed run of
    `run`'s preset; NotComparableError when there is none or the categories differ."""
    check_kept(run)
    if against is None:
        against = await previous_completed_run(session, run)
        if against is None:
            raise NotComparableError(
                f"run {run.id} has no earlier completed run of the same "
                f"{'preset' if run.preset_id else 'categories'} to compare with: "
                "name one with ?against=<run id>"
            )
    if against.id == run.id:
        raise NotComparableError("a run cannot be compared with itself: name another run")
    if sorted(against.category_ids) != sorted(run.category_ids):
        raise NotComparableError(
            f"runs {run.id} and {against.id} collected different categories "
            f"({', '.join(run.category_ids)} against {', '.join(against.category_ids)}): "
            "compare runs of the same categories"
        )
    check_kept(against)
    return against


def _ranked(run_id: uuid.UUID, name: str) -> sa.Subquery:
    """A run's sellers with their rank (numbered here, so unfinished runs have one too)."""
    return (
        sa.select(
            RunSeller.username,
            RunSeller.products,
            RunSeller.listings,
            sa.func.row_number().over(order_by=ranking_order()).label("rank"),
        )
        .where(RunSeller.run_id == run_id)
        .subquery(name)
    )


def _only_in(run_id: uuid.UUID, other_id: uuid.UUID) -> AnySelect:
    """Sellers of `run_id` that `other_id` does not have, in `run_id`'s ranking order."""
    ranked = _ranked(run_id, "ranked")
    other = aliased(RunSeller)
    return (
        sa.select(ranked.c.username, ranked.c.rank, ranked.c.products, ranked.c.listings)
        .where(~sa.exists().where(other.run_id == other_id, other.username == ranked.c.username))
        .order_by(ranked.c.rank)
    )


def _price_changes(run_id: uuid.UUID, other_id: uuid.UUID) -> AnySelect:
    """Listings (same product, same eBay item) in both runs with a different price or
    currency, the largest relative change first."""
    new, old = aliased(RunListing), aliased(RunListing)
    relative = sa.func.abs(new.price - old.price) / old.price
    return (
        sa.select(
            new.asin,
            new.item_id,
            new.seller_username,
            new.title,
            old.price,
            new.price,
            new.currency,
        )
        .join(
            old, sa.and_(old.run_id == other_id, old.asin == new.asin, old.item_id == new.item_id)
        )
        .where(
            new.run_id == run_id,
            new.price.is_not(None),
            old.price.is_not(None),
            sa.or_(new.price != old.price, new.currency != old.currency),
        )
        .order_by(
            sa.case((old.price == 0, None), else_=relative).desc().nulls_last(),
            new.asin,
            new.item_id,
        )
    )


async def ranking(session: AsyncSession, run_id: uuid.UUID) -> dict[str, tuple[int, int, int]]:
    """Each seller's (rank, products, listings), in ranking order: one scan of the
    ranking's index."""
    rows = await session.execute(
        sa.select(RunSeller.username, RunSeller.products, RunSeller.listings)
        .where(RunSeller.run_id == run_id)
        .order_by(*ranking_order())
    )
    return {name: (rank, products, n) for rank, (name, products, n) in enumerate(rows, start=1)}


def movement_order(change: SellerChange) -> tuple[int, int, int]:
    """Sort key of sellers in both runs: most places moved first, then most products
    gained or lost, then rank now."""
    return (-abs(change.rank_change or 0), -abs(change.products_change or 0), change.rank or 0)


def _movers(
    this: dict[str, tuple[int, int, int]], other: dict[str, tuple[int, int, int]]
) -> tuple[list[SellerChange], int]:
    """Sellers of both rankings whose rank or product count changed, most moved first (by
    places, then products, then rank now), and how many did not change.

    Joined here rather than in SQL: both rankings are needed whole (a rank depends on every
    seller), and SQLite joins two window-function subqueries by scanning one per row."""
    moved = [
        SellerChange(name, *now, *then)
        for name, now in this.items()
        if (then := other.get(name)) is not None and now[:2] != then[:2]
    ]
    moved.sort(key=movement_order)
    common = sum(1 for name in this if name in other)
    return moved, common - len(moved)


@dataclass(frozen=True, slots=True)
class Comparison:
    """Pages of the sections asked for (with whether more follow), and the summary when
    every section was asked for."""

    pages: dict[Section, tuple[list[SellerChange] | list[PriceChange], bool]]
    summary: Summary | None


async def compare(
    session: AsyncSession,
    run: CollectionRun,
    against: CollectionRun,
    sections: Sequence[Section] = SECTIONS,
    *,
    offset: int = 0,
    limit: int,
) -> Comparison:
    """A page of each of `sections`; with all of them, the summary as well. Each SQL
    section counts its rows in the pass that sorts them (a window count)."""
    pages: dict[Section, tuple[list[SellerChange] | list[PriceChange], bool]] = {}
    totals: dict[str, int] = {}
    for section in sections:
        if section == "movers":
            movers, totals["unchanged"] = _movers(
                await ranking(session, run.id), await ranking(session, against.id)
            )
            totals[section] = len(movers)
            pages[section] = movers[offset : offset + limit], len(movers) > offset + limit
            continue
        statement = _statement(run.id, against.id, section)
        counted = statement.add_columns(sa.func.count().over().label("total"))
        rows = (await session.execute(counted.offset(offset).limit(limit + 1))).all()
        totals[section] = rows[0][-1] if rows else 0
        pages[section] = _items(section, [row[:-1] for row in rows[:limit]]), len(rows) > limit
    summary = None
    if set(sections) == set(SECTIONS) and offset == 0:
        summary = Summary(
            new_sellers=totals["new_sellers"],
            gone_sellers=totals["gone_sellers"],
            movers=totals["movers"],
            unchanged_sellers=totals["unchanged"],
            price_changes=totals["price_changes"],
        )
    return Comparison(pages, summary)


def _statement(run_id: uuid.UUID, against_id: uuid.UUID, section: Section) -> AnySelect:
    if section == "new_sellers":
        return _only_in(run_id, against_id)
    if section == "gone_sellers":
        return _only_in(against_id, run_id)
    return _price_changes(run_id, against_id)


def _items(section: Section, rows: Sequence[Any]) -> list[SellerChange] | list[PriceChange]:
    if section == "new_sellers":
        return [SellerChange(r[0], r[1], r[2], r[3], None, None, None) for r in rows]
    if section == "gone_sellers":
        return [SellerChange(r[0], None, None, None, r[1], r[2], r[3]) for r in rows]
    return [PriceChange(r[0], r[1], r[2], r[3], _money(r[4]), _money(r[5]), r[6]) for r in rows]


def _money(value: Any) -> Decimal:
    price = money(value)
    assert price is not None  # the statement keeps priced listings only
    return price


CSV_COLUMNS = [
    "section",
    "seller_username",
    "rank",
    "against_rank",
    "rank_change",
    "products",
    "against_products",
    "products_change",
    "asin",
    "item_id",
    "listing_title",
    "old_price",
    "new_price",
    "currency",
]


def _csv_row(section: Section, item: SellerChange | PriceChange) -> list[Any]:
    if isinstance(item, PriceChange):
        return [
            section,
            item.username,
            *([None] * 6),
            item.asin,
            item.item_id,
            item.title,
            item.old_price,
            item.new_price,
            item.currency,
        ]
    return [
        section,
        item.username,
        item.rank,
        item.against_rank,
        item.rank_change,
        item.products,
        item.against_products,
        item.products_change,
        *([None] * 6),
    ]


async def export_csv(
    database: Database, run: CollectionRun, against: CollectionRun
) -> AsyncIterator[bytes]:
    """Every section as CSV rows, one `section` column naming each row's, in batches."""
    yield csv_chunk([CSV_COLUMNS])
    async with database.read() as session:
        for section in SECTIONS:
            if section == "movers":
                movers, _ = _movers(
                    await ranking(session, run.id), await ranking(session, against.id)
                )
                for start in range(0, len(movers), EXPORT_BATCH):
                    batch = movers[start : start + EXPORT_BATCH]
                    yield csv_chunk([_csv_row(section, item) for item in batch])
                continue
            statement = _statement(run.id, against.id, section)
            stream = await session.stream(statement.execution_options(yield_per=EXPORT_BATCH))
            async for partition in stream.partitions():
                yield csv_chunk([_csv_row(section, item) for item in _items(section, partition)])
