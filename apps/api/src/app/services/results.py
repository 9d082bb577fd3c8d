"""Results of runs: the seller ranking, CSV exports streamed in batches, and retention."""

from __future__ import annotations

import csv
import io
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

from app.database import Database
from app.tables import CollectionRun, RunCategory, RunListing, RunProduct, RunSeller, RunStatus

logger = logging.getLogger(__name__)

EXPORT_BATCH = 500
AnySelect = sa.Select[*tuple[Any, ...]]


class ResultsPurgedError(Exception):
    """The run's results were deleted by the retention policy."""


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


async def previous_completed_run(session: AsyncSession, run: CollectionRun) -> uuid.UUID | None:
    """The organization's latest completed run created before `run` with results kept."""
    return await session.scalar(
        sa.select(CollectionRun.id)
        .where(
            CollectionRun.org_id == run.org_id,
            CollectionRun.status == RunStatus.COMPLETED,
            CollectionRun.created_at < run.created_at,
            CollectionRun.results_purged_at.is_(None),
        )
        .order_by(CollectionRun.created_at.desc(), CollectionRun.id.desc())
        .limit(1)
    )


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
            RunListing.seller_username,
            products,
            listings,
            sa.func.min(RunListing.price),
            sa.func.max(RunListing.price),
            sa.func.max(RunListing.seller_feedback_score),
            sa.func.max(RunListing.seller_feedback_percentage),
            is_new,
        )
        .where(RunListing.run_id == run_id)
        .group_by(RunListing.seller_username)
        .order_by(products.desc(), listings.desc(), RunListing.seller_username)
    )


def _ranked(offset: int, rows: Sequence[Any]) -> list[RankedSeller]:
    return [
        RankedSeller(
            rank=offset + index + 1,
            username=row[0],
            products=row[1],
            listings=row[2],
            min_price=_decimal(row[3]),
            max_price=_decimal(row[4]),
            feedback_score=row[5],
            feedback_percentage=_decimal(row[6]),
            new_since_last_run=None if row[7] is None else bool(row[7]),
        )
        for index, row in enumerate(rows)
    ]


def _decimal(value: Any) -> Decimal | None:
    # SQLite returns aggregates of NUMERIC columns as floats; keep money exact at the edge.
    if value is None:
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value)).quantize(Decimal("0.01"))


def _check_kept(run: CollectionRun) -> None:
    if run.results_purged_at is not None:
        raise ResultsPurgedError(
            f"results of run {run.id} were deleted on {run.results_purged_at:%Y-%m-%d} "
            "by the retention policy (RESULTS_RETENTION_DAYS)"
        )


async def rank_sellers(
    session: AsyncSession, run: CollectionRun, *, offset: int, limit: int
) -> tuple[list[RankedSeller], bool]:
    """One page of the run's seller ranking, and whether more follow."""
    _check_kept(run)
    previous = await previous_completed_run(session, run)
    rows = (await session.execute(_ranking(run.id, previous).offset(offset).limit(limit + 1))).all()
    return _ranked(offset, rows[:limit]), len(rows) > limit


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


def _csv_chunk(rows: Sequence[Sequence[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180: CRLF, minimal quoting
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return buffer.getvalue().encode()


async def export_csv(database: Database, run: CollectionRun, kind: str) -> AsyncIterator[bytes]:
    """The run's sellers or listings as CSV, produced batch by batch (never all in memory)."""
    _check_kept(run)
    yield _csv_chunk([SELLER_COLUMNS if kind == "sellers" else LISTING_COLUMNS])
    async with database.read() as session:
        statement: AnySelect
        if kind == "sellers":
            previous = await previous_completed_run(session, run)
            statement = _ranking(run.id, previous)
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
        offset = 0
        async for partition in stream.partitions():
            if kind == "sellers":
                ranked = _ranked(offset, partition)
                offset += len(partition)
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
