"""Results of runs: the seller ranking, its CSV export streamed in batches, and retention."""

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
from sqlalchemy.orm import QueryableAttribute, aliased

from app.core.database import Database
from app.errors import GoneError
from app.runs import sellers
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
    median_price: Decimal | None = None
    """Set once the run has finished."""
    currency: str | None = None
    median_margin: Decimal | None = None
    """Of its listings' estimated margins (app.runs.margins); set once the run has finished."""


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


SellerSort = Literal["rank", "seller", "products", "listings", "price", "feedback", "margin"]
SELLER_SORTS: tuple[SellerSort, ...] = get_args(SellerSort)


def _page_columns(previous_run_id: uuid.UUID | None) -> tuple[Any, ...]:
    """The columns of a ranking row after its rank: figures, then whether it is new."""
    if previous_run_id is None:
        is_new: sa.ColumnElement[Any] = sa.null()
    else:
        earlier = aliased(RunSeller)
        is_new = sa.not_(
            sa.exists().where(
                earlier.run_id == previous_run_id, earlier.username == RunSeller.username
            )
        )
    return (
        RunSeller.username,
        RunSeller.products,
        RunSeller.listings,
        RunSeller.min_price,
        RunSeller.max_price,
        RunSeller.feedback_score,
        RunSeller.feedback_percentage,
        is_new.label("new_since_last_run"),
        RunSeller.median_price,
        RunSeller.currency,
        RunSeller.median_margin,
    )


SORT_KEYS: dict[SellerSort, Any] = {
    "seller": sa.func.lower(RunSeller.username),
    "products": RunSeller.products,
    "listings": RunSeller.listings,
    "price": RunSeller.min_price,
    "feedback": RunSeller.feedback_score,
    "margin": RunSeller.median_margin,
}


def _sorted_ranking(
    run_id: uuid.UUID,
    previous_run_id: uuid.UUID | None,
    sort: SellerSort,
    descending: bool,
    *,
    rank: Any,
) -> AnySelect:
    """The ranking in the order of `sort`, each seller with its `rank` (the first column).

    Ties of the chosen column, and sellers without a value (last either way), stay in
    ranking order, so paging through any order is deterministic.
    """
    statement = sa.select(rank, *_page_columns(previous_run_id)).where(RunSeller.run_id == run_id)
    if sort == "rank":
        return statement.order_by(*sellers.ranking_order(reverse=descending))
    key = SORT_KEYS[sort]
    return statement.order_by(
        (key.desc() if descending else key.asc()).nulls_last(), *sellers.ranking_order()
    )


def _ranked(rows: Sequence[Sequence[Any]]) -> list[RankedSeller]:
    """Rows of `_sorted_ranking` (the rank first, then `_page_columns`)."""
    return [
        RankedSeller(
            rank=row[0],
            username=row[1],
            products=row[2],
            listings=row[3],
            min_price=money(row[4]),
            max_price=money(row[5]),
            feedback_score=row[6],
            feedback_percentage=money(row[7]),
            new_since_last_run=None if row[8] is None else bool(row[8]),
            median_price=money(row[9]),
            currency=row[10],
            median_margin=money(row[11]),
        )
        for row in rows
    ]


def money(value: Any) -> Decimal | None:
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
    rows: Sequence[Sequence[Any]]
    if sort == "rank":  # the index's order: a seller's rank is its position in it
        statement = _sorted_ranking(run.id, previous_id, sort, descending, rank=sa.null())
        rows = (await session.execute(statement.offset(offset).limit(limit + 1))).all()
        if descending:
            last = await count_sellers(session, run) - offset
            ranks = range(last, last - len(rows), -1)
        else:
            ranks = range(offset + 1, offset + len(rows) + 1)
        rows = [(rank, *row[1:]) for rank, row in zip(ranks, rows, strict=True)]
    else:
        statement = _sorted_ranking(run.id, previous_id, sort, descending, rank=RunSeller.rank)
        rows = (await session.execute(statement.offset(offset).limit(limit + 1))).all()
        if any(row[0] is None for row in rows):  # not finished: number the ranking now
            live_rank = sa.func.row_number().over(order_by=sellers.ranking_order())
            statement = _sorted_ranking(run.id, previous_id, sort, descending, rank=live_rank)
            rows = (await session.execute(statement.offset(offset).limit(limit + 1))).all()
    return _ranked(rows[:limit]), len(rows) > limit


async def count_sellers(session: AsyncSession, run: CollectionRun) -> int:
    """How many distinct sellers the run's listings have."""
    check_kept(run)
    count = await session.scalar(
        sa.select(sa.func.count()).select_from(RunSeller).where(RunSeller.run_id == run.id)
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
    "median_price",
    "currency",
    "median_margin",
    "fee_percent",
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


def csv_chunk(rows: Sequence[Sequence[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180: CRLF, minimal quoting
    writer.writerows([_cell(value) for value in row] for row in rows)
    return buffer.getvalue().encode()


async def export_csv(database: Database, run: CollectionRun) -> AsyncIterator[bytes]:
    """The run's seller ranking as CSV, produced batch by batch (never all in memory); the
    listings' CSV is `app.runs.listings.export_csv`."""
    check_kept(run)
    yield csv_chunk([SELLER_COLUMNS])
    async with database.read() as session:
        previous = await previous_completed_run(session, run)
        statement = _sorted_ranking(
            run.id, previous.id if previous else None, "rank", False, rank=sa.null()
        )
        stream = await session.stream(statement.execution_options(yield_per=EXPORT_BATCH))
        position = 0
        async for partition in stream.partitions():
            ranks = range(position + 1, position + len(partition) + 1)
            position += len(partition)
            ranked = _ranked([(rank, *row[1:]) for rank, row in zip(ranks, partition, strict=True)])
            yield csv_chunk(
                [
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
                        s.median_price,
                        s.currency,
                        s.median_margin,
                        run.fee_percent,
                    ]
                    for s in ranked
                ]
            )


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
