"""A run's eBay listings next to the Amazon price of their product, with estimated margins:
pages of them (all, or one seller's, with the seller's figures), and the listings CSV."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.database import Database
from app.core.pagination import decode_key, encode_key
from app.runs import margins
from app.runs.results import EXPORT_BATCH, AnySelect, RankedSeller, check_kept, csv_chunk, money
from app.tables import CollectionRun, RunListing, RunProduct, RunSeller


@dataclass(frozen=True, slots=True)
class ListingView:
    """One listing of a run, its product's Amazon price, and its estimated margin."""

    asin: str
    product_title: str | None
    brand: str | None
    category_id: str | None
    sales_rank: int | None
    amazon_price: Decimal | None
    amazon_currency: str | None
    item_id: str
    title: str
    price: Decimal | None
    currency: str
    shipping: Decimal | None
    shipping_currency: str | None
    username: str
    seller_feedback_score: int | None
    seller_feedback_percentage: Decimal | None
    url: str
    margin: margins.Margin

    @property
    def estimated_margin(self) -> Decimal | None:
        """The margin's amount (None: see `margin_note`)."""
        return self.margin.value

    @property
    def margin_currency(self) -> str | None:
        """The margin's currency."""
        return self.margin.currency

    @property
    def margin_note(self) -> str | None:
        """Why there is no margin, or what the estimate assumed."""
        return self.margin.note

    @property
    def estimated_fees(self) -> Decimal | None:
        """The eBay fees the estimate takes off."""
        return self.margin.fees


_PRODUCT_COLUMNS = (
    RunProduct.title,
    RunProduct.brand,
    RunProduct.category_id,
    RunProduct.sales_rank,
    RunProduct.price,
    RunProduct.currency,
)
_LISTING_COLUMNS = (
    RunListing.item_id,
    RunListing.title,
    RunListing.price,
    RunListing.currency,
    RunListing.shipping,
    RunListing.shipping_currency,
    RunListing.seller_username,
    RunListing.seller_feedback_score,
    RunListing.seller_feedback_percentage,
    RunListing.url,
)


def _statement(run_id: uuid.UUID) -> AnySelect:
    """Every listing of the run with its product (if the run stored it): rows for `_view`."""
    return (
        sa.select(RunListing.asin, *_PRODUCT_COLUMNS, *_LISTING_COLUMNS)
        .outerjoin(
            RunProduct,
            sa.and_(RunProduct.run_id == RunListing.run_id, RunProduct.asin == RunListing.asin),
        )
        .where(RunListing.run_id == run_id)
    )


def _view(row: Sequence[Any], fee_percent: Decimal) -> ListingView:
    """A row of `_statement` as a ListingView, its margin estimated with `fee_percent`."""
    amazon_price, price, shipping = money(row[5]), money(row[9]), money(row[11])
    return ListingView(
        asin=row[0],
        product_title=row[1],
        brand=row[2],
        category_id=row[3],
        sales_rank=row[4],
        amazon_price=amazon_price,
        amazon_currency=row[6],
        item_id=row[7],
        title=row[8],
        price=price,
        currency=row[10],
        shipping=shipping,
        shipping_currency=row[12],
        username=row[13],
        seller_feedback_score=row[14],
        seller_feedback_percentage=money(row[15]),
        url=row[16],
        margin=margins.estimate(
            price=price,
            currency=row[10],
            shipping=shipping,
            shipping_currency=row[12],
            amazon_price=amazon_price,
            amazon_currency=row[6],
            fee_percent=fee_percent,
        ),
    )


async def list_listings(
    session: AsyncSession,
    run: CollectionRun,
    *,
    seller: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[ListingView], str | None]:
    """One page of the run's listings (of one seller's, with `seller`), by ASIN then eBay
    item id, and the cursor of the next page (None on the last). Keyset-paged on the
    listings' primary key, so a page costs the same however deep."""
    check_kept(run)
    # The page of listings first, read in the primary key's order, then the products of
    # that page by key: one join could make the planner (PostgreSQL with row-level
    # security) scan the run's products for every listing, or sort the run's listings.
    statement = sa.select(RunListing.asin, *_LISTING_COLUMNS).where(RunListing.run_id == run.id)
    if seller is not None:
        statement = statement.where(RunListing.seller_username == seller)
    if cursor is not None:
        asin, item_id = decode_key(cursor, 2)
        statement = statement.where(
            # (asin >= ... says the same; PostgreSQL estimates the rows left from it, where
            # it guesses a handful for the row comparison and sorts them all instead)
            RunListing.asin >= asin,
            sa.tuple_(RunListing.asin, RunListing.item_id) > sa.tuple_(asin, item_id),
        )
    statement = statement.order_by(RunListing.asin, RunListing.item_id).limit(limit + 1)
    rows = (await session.execute(statement)).all()
    products: dict[str, tuple[Any, ...]] = {}
    if asins := sorted({row[0] for row in rows[:limit]}):
        found = await session.execute(
            sa.select(RunProduct.asin, *_PRODUCT_COLUMNS).where(
                RunProduct.run_id == run.id, RunProduct.asin.in_(asins)
            )
        )
        products = {row[0]: tuple(row[1:]) for row in found}
    missing = (None,) * len(_PRODUCT_COLUMNS)
    views = [
        _view((row[0], *products.get(row[0], missing), *row[1:]), run.fee_percent)
        for row in rows[:limit]
    ]
    next_cursor = encode_key(views[-1].asin, views[-1].item_id) if len(rows) > limit else None
    return views, next_cursor


async def seller_in_run(
    session: AsyncSession, run: CollectionRun, username: str
) -> RankedSeller | None:
    """One seller's figures in the run and its rank (numbered now while the run goes on);
    None when the run has no such seller."""
    check_kept(run)
    seller = await session.get(RunSeller, (run.id, username))
    if seller is None:
        return None
    rank = seller.rank
    if rank is None:  # not finished: its place in the ranking's order, now
        ahead = await session.scalar(
            sa.select(sa.func.count())
            .select_from(RunSeller)
            .where(
                RunSeller.run_id == run.id,
                sa.tuple_(-RunSeller.products, -RunSeller.listings, RunSeller.username)
                < sa.tuple_(-seller.products, -seller.listings, seller.username),
            )
        )
        rank = (ahead or 0) + 1
    return RankedSeller(
        rank=rank,
        username=seller.username,
        products=seller.products,
        listings=seller.listings,
        min_price=money(seller.min_price),
        max_price=money(seller.max_price),
        feedback_score=seller.feedback_score,
        feedback_percentage=money(seller.feedback_percentage),
        new_since_last_run=None,
        median_price=money(seller.median_price),
        currency=seller.currency,
        median_margin=money(seller.median_margin),
    )


CSV_COLUMNS = [
    "asin",
    "product_title",
    "brand",
    "category_id",
    "sales_rank",
    "amazon_price",
    "amazon_currency",
    "item_id",
    "listing_title",
    "price",
    "currency",
    "shipping",
    "shipping_currency",
    "estimated_fees",
    "estimated_margin",
    "margin_currency",
    "margin_note",
    "seller_username",
    "seller_feedback_score",
    "seller_feedback_percentage",
    "url",
    "fee_percent",
]


async def export_csv(database: Database, run: CollectionRun) -> AsyncIterator[bytes]:
    """Every listing of the run as CSV (CSV_COLUMNS), by category and best seller first,
    produced batch by batch (never all in memory)."""
    check_kept(run)
    yield csv_chunk([CSV_COLUMNS])
    statement = _statement(run.id).order_by(
        RunProduct.category_position, RunProduct.sales_rank, RunListing.asin, RunListing.item_id
    )
    async with database.read() as session:
        stream = await session.stream(statement.execution_options(yield_per=EXPORT_BATCH))
        async for partition in stream.partitions():
            yield csv_chunk(_csv_rows(partition, run.fee_percent))


def _csv_rows(rows: Sequence[Sequence[Any]], fee_percent: Decimal) -> list[list[Any]]:
    """Rows of `_statement` as rows of the CSV (CSV_COLUMNS)."""
    return [
        [
            view.asin,
            view.product_title,
            view.brand,
            view.category_id,
            view.sales_rank,
            view.amazon_price,
            view.amazon_currency,
            view.item_id,
            view.title,
            view.price,
            view.currency,
            view.shipping,
            view.shipping_currency,
            view.estimated_fees,
            view.estimated_margin,
            view.margin_currency,
            view.margin_note,
            view.username,
            view.seller_feedback_score,
            view.seller_feedback_percentage,
            view.url,
            fee_percent,
        ]
        for view in (_view(row, fee_percent) for row in rows)
    ]
