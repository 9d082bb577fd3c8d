"""The sellers of a run and their figures, kept as the run goes.

A run's seller ranking (most distinct products listed, then most listings, then name) is
read on every page of the run's sellers, by exports, digests and comparisons. Computing
it from the listings costs time linear in the run's listings on every read. Instead:

- each eBay checkpoint adds the sellers' figures of its product to `run_sellers`, in the
  checkpoint's own transaction (a checkpoint is written exactly once, so the sums are
  exactly those of the listings written; checkpoints written together add theirs in one
  statement);
- when the run finishes, `finish` numbers the ranking and computes each seller's median
  price, in the transaction that finishes it.

A page of the ranking is then a range of the index `ix_run_sellers_ranking`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.dml import Insert

from app.core.database import dialect_insert
from app.runs import margins as margins_sql
from app.tables import CollectionRun, RunListing, RunProduct, RunSeller


@dataclass(slots=True)
class _Figures:
    """One seller's figures in the listings of the products checkpointed together."""

    products: int = 0
    listings: int = 0
    currency: str | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    feedback_score: int | None = None
    feedback_percentage: Decimal | None = None

    def add(self, row: dict[str, Any]) -> None:
        self.listings += 1
        self.currency = self.currency or row["currency"]
        price = row["price"]
        if price is not None:
            self.min_price = price if self.min_price is None else min(self.min_price, price)
            self.max_price = price if self.max_price is None else max(self.max_price, price)
        self.feedback_score = _greatest(self.feedback_score, row["seller_feedback_score"])
        self.feedback_percentage = _greatest(
            self.feedback_percentage, row["seller_feedback_percentage"]
        )


def _greatest(a: Any, b: Any) -> Any:
    """The greater of two values, ignoring None."""
    if a is None:
        return b
    return a if b is None or a >= b else b


def _least_sql(current: Any, new: Any) -> sa.ColumnElement[Any]:
    """The smaller of two values where NULL means "none" (SQL's MIN/LEAST disagree on it)."""
    return sa.case(
        (current.is_(None), new), (new.is_(None), current), (new < current, new), else_=current
    )


def _greatest_sql(current: Any, new: Any) -> sa.ColumnElement[Any]:
    return sa.case(
        (current.is_(None), new), (new.is_(None), current), (new > current, new), else_=current
    )


async def record_products(
    session: AsyncSession | AsyncConnection,
    run_id: uuid.UUID,
    products: Sequence[Sequence[dict[str, Any]]],
) -> int:
    """Add the listings of products checkpointed together (per product, rows of
    `run_listings` with distinct item ids, already inserted) to their sellers' figures;
    return how many sellers are new to the run.

    One upsert adds the figures of every seller: a seller is new when its row, once
    written, counts exactly the products of this call (an existing row already counted
    at least one other). A seller's currency is that of its first listings: a run
    searches one eBay marketplace, whose prices share one currency."""
    figures: dict[str, _Figures] = {}
    for listing_rows in products:
        sellers_of_product = set()
        for row in listing_rows:
            username = row["seller_username"]
            seller = figures.get(username)
            if seller is None:
                seller = figures[username] = _Figures()
            if username not in sellers_of_product:
                sellers_of_product.add(username)
                seller.products += 1
            seller.add(row)
    if not figures:
        return 0
    values = [  # in key order: concurrent upserts lock shared sellers in one order
        {
            "run_id": run_id,
            "username": username,
            "products": seller.products,
            "listings": seller.listings,
            "min_price": seller.min_price,
            "max_price": seller.max_price,
            "feedback_score": seller.feedback_score,
            "feedback_percentage": seller.feedback_percentage,
            "currency": seller.currency,
        }
        for username, seller in sorted(figures.items())
    ]
    bind = session if isinstance(session, AsyncConnection) else session.get_bind()
    written = await session.execute(_add_figures(bind.dialect.name), values)
    return sum(1 for username, products in written if products == figures[username].products)


@cache
def _add_figures(dialect: str) -> Insert:
    """The upsert of sellers' figures: a new seller's row, or its figures added to its row."""
    insert = dialect_insert(dialect, RunSeller.metadata.tables[RunSeller.__tablename__])
    seller, new = insert.table.c, insert.excluded
    return insert.on_conflict_do_update(
        index_elements=[seller.run_id, seller.username],
        set_={
            "products": seller.products + new.products,
            "listings": seller.listings + new.listings,
            "min_price": _least_sql(seller.min_price, new.min_price),
            "max_price": _greatest_sql(seller.max_price, new.max_price),
            "feedback_score": _greatest_sql(seller.feedback_score, new.feedback_score),
            "feedback_percentage": _greatest_sql(
                seller.feedback_percentage, new.feedback_percentage
            ),
        },
    ).returning(seller.username, seller.products)


def ranking_order(*, reverse: bool = False) -> tuple[sa.ColumnElement[Any], ...]:
    """The ranking's order: most products, then most listings, then name (or its reverse:
    the index serves both)."""
    if reverse:
        return (RunSeller.products.asc(), RunSeller.listings.asc(), RunSeller.username.desc())
    return (RunSeller.products.desc(), RunSeller.listings.desc(), RunSeller.username.asc())


async def finish(session: AsyncSession, run_id: uuid.UUID) -> None:
    """Number the run's ranking and set each seller's median listing price and median
    estimated margin (with the run's fee %): called in the transaction that finishes the
    run, once every listing is written."""
    ranked = (
        sa.select(
            RunSeller.username,
            sa.func.row_number().over(order_by=ranking_order()).label("rank"),
        )
        .where(RunSeller.run_id == run_id)
        .subquery("ranked")
    )
    await session.execute(
        sa.update(RunSeller)
        .where(RunSeller.run_id == run_id, RunSeller.username == ranked.c.username)
        .values(rank=ranked.c.rank)
        .execution_options(synchronize_session=False)
    )
    medians = _medians(run_id)
    await session.execute(
        sa.update(RunSeller)
        .where(RunSeller.run_id == run_id, RunSeller.username == medians.c.username)
        .values(median_price=medians.c.median_price)
        .execution_options(synchronize_session=False)
    )
    fee_percent = await session.scalar(
        sa.select(CollectionRun.fee_percent).where(CollectionRun.id == run_id)
    )
    margins = _median_margins(run_id, margins_sql.basis_points(fee_percent or Decimal(0)))
    await session.execute(
        sa.update(RunSeller)
        .where(RunSeller.run_id == run_id, RunSeller.username == margins.c.username)
        .values(median_margin=margins.c.median_margin)
        .execution_options(synchronize_session=False)
    )


def _medians(run_id: uuid.UUID) -> sa.Subquery:
    """Each seller's median listing price in the run: the middle price, or the mean of the
    middle two rounded half up to the cent. Portable SQL: window functions number each
    seller's prices; the arithmetic is in whole cents, so SQLite's floats cannot round it
    differently from PostgreSQL's numerics."""
    cents = sa.cast(sa.func.round(RunListing.price * 100), sa.BigInteger)
    ordered = (
        sa.select(
            RunListing.seller_username.label("username"),
            cents.label("cents"),
            sa.func.row_number()
            .over(partition_by=RunListing.seller_username, order_by=RunListing.price)
            .label("position"),
            sa.func.count().over(partition_by=RunListing.seller_username).label("count"),
        )
        .where(RunListing.run_id == run_id, RunListing.price.is_not(None))
        .subquery("ordered")
    )
    middle = sa.or_(
        ordered.c.position == (ordered.c.count + 1) // 2,
        ordered.c.position == (ordered.c.count + 2) // 2,
    )
    # (PostgreSQL sums bigints to a numeric: cast back, so `//` divides whole numbers)
    total = sa.cast(sa.func.sum(ordered.c.cents), sa.BigInteger)
    middles = sa.cast(sa.func.count(), sa.BigInteger)
    median_cents = (total + middles - 1) // middles  # 1 middle: itself; 2: mean, half up
    return (
        sa.select(ordered.c.username, (median_cents / 100).label("median_price"))
        .where(middle)
        .group_by(ordered.c.username)
        .subquery("medians")
    )


# Added to a sum of one or two margins (in cents) before integer division, so the division
# never sees a negative number (SQL truncates those toward zero; the median rounds up).
_OFFSET_CENTS = 10**14


def _median_margins(run_id: uuid.UUID, fee_bp: int) -> sa.Subquery:
    """Each seller's median estimated margin (`app.runs.margins`) over its listings that
    have one, in the seller's currency: the middle margin, or the mean of the middle two
    with a half cent rounded up. Whole cents throughout, as in `_medians`."""
    margin = margins_sql.margin_cents_sql(
        price=RunListing.price,
        currency=RunListing.currency,
        shipping=RunListing.shipping,
        shipping_currency=RunListing.shipping_currency,
        amazon_price=RunProduct.price,
        amazon_currency=RunProduct.currency,
        fee_bp=fee_bp,
    )
    with_margins = (
        sa.select(RunListing.seller_username.label("username"), margin.label("cents"))
        .join(RunProduct, sa.and_(RunProduct.run_id == run_id, RunProduct.asin == RunListing.asin))
        .join(
            RunSeller,
            sa.and_(
                RunSeller.run_id == run_id,
                RunSeller.username == RunListing.seller_username,
                RunSeller.currency == RunListing.currency,
            ),
        )
        .where(RunListing.run_id == run_id)
        .subquery("with_margins")
    )
    ordered = (
        sa.select(
            with_margins.c.username,
            with_margins.c.cents,
            sa.func.row_number()
            .over(partition_by=with_margins.c.username, order_by=with_margins.c.cents)
            .label("position"),
            sa.func.count().over(partition_by=with_margins.c.username).label("count"),
        )
        .where(with_margins.c.cents.is_not(None))
        .subquery("ordered_margins")
    )
    middle = sa.or_(
        ordered.c.position == (ordered.c.count + 1) // 2,
        ordered.c.position == (ordered.c.count + 2) // 2,
    )
    total = sa.cast(sa.func.sum(ordered.c.cents), sa.BigInteger)
    middles = sa.cast(sa.func.count(), sa.BigInteger)
    # 1 middle: itself; 2: their mean, a half cent rounded up (toward +infinity).
    median_cents = (total + middles - 1 + middles * _OFFSET_CENTS) // middles - _OFFSET_CENTS
    return (
        sa.select(ordered.c.username, (median_cents / 100).label("median_margin"))
        .where(middle)
        .group_by(ordered.c.username)
        .subquery("median_margins")
    )
