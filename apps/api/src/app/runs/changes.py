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


def _movers(run_id: uuid.UUID, other_id: uuid.UUID, *, changed: bool = True) -> AnySelect:
    """Sellers in both runs (whose rank or product count changed, or not), most moved
    first: by places, then by products, then by rank in `run_id`."""
    this, other = _ranked(run_id, "this"), _ranked(other_id, "other")
    places = other.c.rank - this.c.rank
    products = this.c.products - other.c.products
    moved = sa.or_(places != 0, products != 0)
    return (
        sa.select(
            this.c.username,
            this.c.rank,
            this.c.products,
            this.c.listings,
            other.c.rank,
            other.c.products,
            other.c.listings,
        )
        .join(other, other.c.username == this.c.username)
        .where(moved if changed else ~moved)
        .order_by(sa.func.abs(places).desc(), sa.func.abs(products).desc(), this.c.rank)
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


async def page(
    session: AsyncSession,
    run: CollectionRun,
    against: CollectionRun,
    section: Section,
    *,
    offset: int,
    limit: int,
) -> tuple[list[SellerChange] | list[PriceChange], bool]:
    """One page of a section, and whether more follow."""
    statement = _statement(run.id, against.id, section)
    rows = (await session.execute(statement.offset(offset).limit(limit + 1))).all()
    return _items(section, rows[:limit]), len(rows) > limit


def _statement(run_id: uuid.UUID, against_id: uuid.UUID, section: Section) -> AnySelect:
    if section == "new_sellers":
        return _only_in(run_id, against_id)
    if section == "gone_sellers":
        return _only_in(against_id, run_id)
    if section == "movers":
        return _movers(run_id, against_id)
    return _price_changes(run_id, against_id)


def _items(section: Section, rows: Sequence[Any]) -> list[SellerChange] | list[PriceChange]:
    if section == "new_sellers":
        return [SellerChange(r[0], r[1], r[2], r[3], None, None, None) for r in rows]
    if section == "gone_sellers":
        return [SellerChange(r[0], None, None, None, r[1], r[2], r[3]) for r in rows]
    if section == "movers":
        return [SellerChange(*r) for r in rows]
    return [PriceChange(r[0], r[1], r[2], r[3], _money(r[4]), _money(r[5]), r[6]) for r in rows]


def _money(value: Any) -> Decimal:
    price = money(value)
    assert price is not None  # the statement keeps priced listings only
    return price


async def summary(session: AsyncSession, run: CollectionRun, against: CollectionRun) -> Summary:
    """How many items each section has, and how many sellers did not change."""

    async def count(statement: AnySelect) -> int:
        total = await session.scalar(
            sa.select(sa.func.count()).select_from(statement.order_by(None).subquery())
        )
        return total or 0

    return Summary(
        new_sellers=await count(_only_in(run.id, against.id)),
        gone_sellers=await count(_only_in(against.id, run.id)),
        movers=await count(_movers(run.id, against.id)),
        unchanged_sellers=await count(_movers(run.id, against.id, changed=False)),
        price_changes=await count(_price_changes(run.id, against.id)),
    )


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
            statement = _statement(run.id, against.id, section)
            stream = await session.stream(statement.execution_options(yield_per=EXPORT_BATCH))
            async for partition in stream.partitions():
                yield csv_chunk([_csv_row(section, item) for item in _items(section, partition)])
