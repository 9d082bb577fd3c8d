"""Results of runs: the seller ranking, CSV exports streamed in batches, and retention."""

from __future__ import annotations

import csv
import io
import logging
import unicodedata
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, get_args

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

from app.core.database import Database
from app.errors import GoneError
from app.tables import CollectionRun, RunCategory, RunListing, RunProduct, RunSeller, RunStatus

logger = logging.getLogger(__name__)

EXPORT_BATCH = 500
AnySelect = sa.Select[*tuple[Any, ...]]


class ResultsPurgedError(GoneError):
    """The run's results were deleted by the retention policy."""

    def __init__(self, run_id: uuid.UUID, message: str) -> None:
        super().__init__(message)
        self.run_id = run_id


@dataclass(frozen=True, slots=True)
class RankedSeller:
    """A seller's place in a run's ranking."""

    rank: int
    username: str
    products: int
    listings: int
    min_price: Decimal | None
    max_price: Decimal | None
    feedback_score: int | None
    feedback_percentage: Decimal | None
    new_since_last_run: bool | None


async def previous_completed_run(session: AsyncSession, run: CollectionRun) -> CollectionRun | None:
    """The run whose sellers `run`'s are compared with ("new since"): the latest completed
    run of the same preset created before it, with results kept. A run of a category list
    rather than a preset (or made before runs recorded their preset) is compared with the
    latest such run of the same list."""
    same_source = (
        CollectionRun.preset_id == run.preset_id
        if run.preset_id is not None
        else sa.and_(
            CollectionRun.preset_id.is_(None), CollectionRun.category_ids == run.category_ids
        )
    )
    return await session.scalar(
        sa.select(CollectionRun)
        .where(
            CollectionRun.org_id == run.org_id,
            same_source,
            CollectionRun.status == RunStatus.COMPLETED,
            CollectionRun.created_at < run.created_at,
            CollectionRun.results_purged_at.is_(None),
        )
        .order_by(CollectionRun.created_at.desc(), CollectionRun.id.desc())
        .limit(1)
    )


SellerSort = Literal["rank", "seller", "products", "listings", "price", "feedback"]
SELLER_SORTS: tuple[SellerSort, ...] = get_args(SellerSort)


def _ranking(run_id: uuid.UUID, previous_run_id: uuid.UUID | None) -> AnySelect:
    """Sellers by distinct products listed, then listings, then name (deterministic ties)."""
    products = sa.func.count(sa.distinct(RunListing.asin)).label("products")
    listings = sa.func.count().label("listings")
    if previous_run_id is None:
        is_new: sa.ColumnElement[Any] = sa.null().label("new_since_last_run")
    else:
        seen_before = (
            sa.exists()
            .where(
                RunSeller.run_id == previous_run_id,
                RunSeller.username == RunListing.seller_username,
            )
            .correlate(RunListing)
        )
        is_new = sa.not_(seen_before).label("new_since_last_run")
    return (
        sa.select(
            RunListing.seller_username.label("username"),
            products,
            listings,
            sa.func.min(RunListing.price).label("min_price"),
            sa.func.max(RunListing.price).label("max_price"),
            sa.func.max(RunListing.seller_feedback_score).label("feedback_score"),
            sa.func.max(RunListing.seller_feedback_percentage).label("feedback_percentage"),
            is_new,
        )
        .where(RunListing.run_id == run_id)
        .group_by(RunListing.seller_username)
        .order_by(products.desc(), listings.desc(), RunListing.seller_username)
    )


def _sorted_ranking(
    run_id: uuid.UUID, previous_run_id: uuid.UUID | None, sort: SellerSort, descending: bool
) -> AnySelect:
    """The ranking in another order, each seller keeping its rank (the first column).

    Ties of the chosen column, and sellers without a value (last either way), stay in
    ranking order, so paging through any order is deterministic.
    """
    ranking = _ranking(run_id, previous_run_id).order_by(None).subquery("ranking")
    c = ranking.c
    rank = (
        sa.func.row_number()
        .over(order_by=(c.products.desc(), c.listings.desc(), c.username))
        .label("rank")
    )
    key: sa.ColumnElement[Any] = {
        "rank": rank,
        "seller": sa.func.lower(c.username),
        "products": c.products,
        "listings": c.listings,
        "price": c.min_price,
        "feedback": c.feedback_score,
    }[sort]
    return sa.select(rank, *c).order_by(
        (key.desc() if descending else key.asc()).nulls_last(), rank
    )


def _ranked(rows: Sequence[Any]) -> list[RankedSeller]:
    """Rows of `_sorted_ranking` (the rank first, then the columns of `_ranking`)."""
    return [
        RankedSeller(
            rank=row[0],
            username=row[1],
            products=row[2],
            listings=row[3],
            min_price=_decimal(row[4]),
            max_price=_decimal(row[5]),
            feedback_score=row[6],
            feedback_percentage=_decimal(row[7]),
            new_since_last_run=None if row[8] is None else bool(row[8]),
        )
        for row in rows
    ]


def _decimal(value: Any) -> Decimal | None:
    # SQLite returns aggregates of NUMERIC columns as floats; keep money exact at the edge.
    if value is None:
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value)).quantize(Decimal("0.01"))


def check_kept(run: CollectionRun) -> None:
    """Raise ResultsPurgedError if retention deleted the run's results."""
    if run.results_purged_at is not None:
        raise ResultsPurgedError(
            run.id,
            f"results of run {run.id} were deleted on {run.results_purged_at:%Y-%m-%d} "
            "by the retention policy (RESULTS_RETENTION_DAYS)",
        )


async def rank_sellers(
    session: AsyncSession,
    run: CollectionRun,
    *,
    offset: int,
    limit: int,
    compared_with: CollectionRun | None,
    sort: SellerSort = "rank",
    descending: bool = False,
) -> tuple[list[RankedSeller], bool]:
    """One page of the run's seller ranking, ordered by `sort`, and whether more follow;
    sellers not in `compared_with` (its `previous_completed_run`) are marked new."""
    check_kept(run)
    previous_id = compared_with.id if compared_with else None
    statement = _sorted_ranking(run.id, previous_id, sort, descending)
    rows = (await session.execute(statement.offset(offset).limit(limit + 1))).all()
    return _ranked(rows[:limit]), len(rows) > limit


async def count_sellers(session: AsyncSession, run: CollectionRun) -> int:
    """How many distinct sellers the run's listings have."""
    check_kept(run)
    count = await session.scalar(
        sa.select(sa.func.count(sa.distinct(RunListing.seller_username))).where(
            RunListing.run_id == run.id
        )
    )
    return count or 0


SELLER_COLUMNS = [
    "rank",
    "seller_username",
    "products",
    "listings",
    "min_price",
    "max_price",
    "feedback_score",
    "feedback_percentage",
    "new_since_last_run",
]
LISTING_COLUMNS = [
    "asin",
    "product_title",
    "brand",
    "category_id",
    "sales_rank",
    "item_id",
    "listing_title",
    "price",
    "currency",
    "seller_username",
    "seller_feedback_score",
    "seller_feedback_percentage",
    "url",
]


FORMULA_STARTS = frozenset("=+-@\u2212")  # (U+2212 MINUS SIGN: a number to some spreadsheets)


def _starts_formula(text: str) -> bool:
    """Whether a spreadsheet may read `text` as a formula. Spreadsheets skip leading
    spaces and control characters before looking at the first character, and fold the
    fullwidth and small forms (U+FF1D, U+FE62) to `=` and `+`; so the check does the same. A cell
    that starts with a tab, carriage return or line feed counts as one, whatever follows."""
    if text[:1] in ("\t", "\r", "\n"):
        return True
    for character in text:
        if character.isspace() or unicodedata.category(character) in ("Cc", "Cf"):
            continue
        return unicodedata.normalize("NFKC", character)[:1] in FORMULA_STARTS
    return False


def _cell(value: Any) -> Any:
    """A CSV cell. Text from the marketplaces that a spreadsheet would run as a formula
    (`=HYPERLINK(...)` in a listing title, also after spaces or fullwidth) gets a leading `'`,
    as OWASP advises; the writer quotes separators and quotes, so no text starts a new cell."""
    if value is None:
        return ""
    if isinstance(value, str) and _starts_formula(value):
        return "'" + value
    return value


def _csv_chunk(rows: Sequence[Sequence[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180: CRLF, minimal quoting
    writer.writerows([_cell(value) for value in row] for row in rows)
    return buffer.getvalue().encode()


async def export_csv(database: Database, run: CollectionRun, kind: str) -> AsyncIterator[bytes]:
    """The run's sellers or listings as CSV, produced batch by batch (never all in memory)."""
    check_kept(run)
    yield _csv_chunk([SELLER_COLUMNS if kind == "sellers" else LISTING_COLUMNS])
    async with database.read() as session:
        statement: AnySelect
        if kind == "sellers":
            previous = await previous_completed_run(session, run)
            statement = _sorted_ranking(
                run.id, previous.id if previous else None, "rank", descending=False
            )
        else:
            statement = (
                sa.select(
                    RunListing.asin,
                    RunProduct.title,
                    RunProduct.brand,
                    RunProduct.category_id,
                    RunProduct.sales_rank,
                    RunListing.item_id,
                    RunListing.title,
                    RunListing.price,
                    RunListing.currency,
                    RunListing.seller_username,
                    RunListing.seller_feedback_score,
                    RunListing.seller_feedback_percentage,
                    RunListing.url,
                )
                .join(
                    RunProduct,
                    sa.and_(
                        RunProduct.run_id == RunListing.run_id, RunProduct.asin == RunListing.asin
                    ),
                )
                .where(RunListing.run_id == run.id)
                .order_by(
                    RunProduct.category_position,
                    RunProduct.sales_rank,
                    RunListing.asin,
                    RunListing.item_id,
                )
            )
        stream = await session.stream(statement.execution_options(yield_per=EXPORT_BATCH))
        async for partition in stream.partitions():
            if kind == "sellers":
                ranked = _ranked(partition)
                rows: list[Sequence[Any]] = [
                    [
                        s.rank,
                        s.username,
                        s.products,
                        s.listings,
                        s.min_price,
                        s.max_price,
                        s.feedback_score,
                        s.feedback_percentage,
                        "" if s.new_since_last_run is None else str(s.new_since_last_run).lower(),
                    ]
                    for s in ranked
                ]
            else:
                rows = [list(row) for row in partition]
            yield _csv_chunk(rows)


async def purge_expired_results(
    database: Database, *, now: datetime, retention: timedelta, batch_size: int
) -> int:
    """Delete results of runs finished before `now - retention`, one small batch per
    transaction so the API never waits long; return the number of rows deleted."""
    cutoff = now - retention
    deleted = 0
    async with database.read() as session:
        run_ids = list(
            await session.scalars(
                sa.select(CollectionRun.id).where(
                    CollectionRun.finished_at < cutoff, CollectionRun.results_purged_at.is_(None)
                )
            )
        )
    tables: list[tuple[type[Any], QueryableAttribute[Any], tuple[QueryableAttribute[Any], ...]]] = [
        (RunListing, RunListing.run_id, (RunListing.asin, RunListing.item_id)),
        (RunSeller, RunSeller.run_id, (RunSeller.username,)),
        (RunProduct, RunProduct.run_id, (RunProduct.asin,)),
        (RunCategory, RunCategory.run_id, (RunCategory.position,)),
    ]
    for run_id in run_ids:
        for table, run_column, key in tables:
            while True:
                batch = sa.select(*key).where(run_column == run_id).limit(batch_size)
                async with database.transaction() as session:
                    result = await session.execute(
                        sa.delete(table).where(run_column == run_id, sa.tuple_(*key).in_(batch))
                    )
                count: int = result.rowcount  # type: ignore[attr-defined]  # CursorResult
                deleted += count
                if count < batch_size:
                    break
        async with database.transaction() as session:
            await session.execute(
                sa.update(CollectionRun)
                .where(CollectionRun.id == run_id)
                .values(results_purged_at=now)
            )
        logger.info("purged results of run %s", run_id, extra={"run_id": str(run_id)})
    return deleted
