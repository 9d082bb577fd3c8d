"""The physical bound of a burst of fires: the rows a burst writes (its fires and its runs),
written straight through the database driver, one multi-row INSERT per table and batch,
with nothing else in the way (no claim, no plan, no ORM, no schedule update). What the
database needs at least to take them, on this machine, in the same run as ours."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from benchlib import bench_settings
from sqlalchemy.engine import make_url

FIRE_COLUMNS = (
    "id",
    "schedule_id",
    "org_id",
    "scheduled_for",
    "fired_at",
    "outcome",
    "run_id",
    "detail",
    "instance_id",
    "manual",
    "backfill",
)
RUN_COLUMNS = (
    "id",
    "org_id",
    "name",
    "status",
    "phase",
    "trigger",
    "schedule_id",
    "preset_id",
    "category_ids",
    "categories_total",
    "categories_done",
    "products_found",
    "products_searched",
    "listings_found",
    "sellers_found",
    "products_per_category",
    "listings_per_product",
    "created_at",
    "updated_at",
    "started_at",
    "fee_percent",
)
CATEGORY_COLUMNS = ("run_id", "position", "category_id", "products_found")


@dataclass
class Batch:
    """The rows of one batch of fires, as plain values (converted for a driver later)."""

    fires: list[tuple[Any, ...]] = field(default_factory=list)
    runs: list[tuple[Any, ...]] = field(default_factory=list)
    categories: list[tuple[Any, ...]] = field(default_factory=list)


def burst_batches(schedules: Sequence[Any], size: int) -> list[Batch]:
    """The burst's rows in batches of `size` fires: one run per organization (its first
    schedule's, as in the burst), the other fires skipped."""
    started: set[uuid.UUID] = set()
    batches = []
    for first in range(0, len(schedules), size):
        batch = Batch()
        for schedule_id, org_id, preset_id, due in schedules[first : first + size]:
            run_id = None
            if org_id not in started:
                started.add(org_id)
                run_id = uuid.uuid4()
                run = (run_id, org_id, "Electronics (scheduled)", "running", "amazon", "schedule")
                counts = (1, 0, 0, 0, 0, 0, 50, 20)  # categories total and done ... listings
                times = (due, due, due)  # created, updated, started
                batch.runs.append(
                    (*run, schedule_id, preset_id, ["172282"], *counts, *times, Decimal("13.25"))
                )
                batch.categories.append((run_id, 0, "172282", 0))
            outcome, detail = ("started", None) if run_id else ("skipped", "run was running")
            fire = (uuid.uuid4(), schedule_id, org_id, due, due, outcome, run_id, detail)
            batch.fires.append((*fire, "bound", False, False))
        batches.append(batch)
    return batches


async def bulk_insert_bound(database_url: str, data_dir: Path, batch: int) -> dict[str, Any]:
    """Write the burst's rows (`burst_batches`) into a database seeded like the burst's:
    per batch one transaction with one multi-row INSERT of its runs, one of their
    categories and one of its fires. Wall and CPU seconds of this process (on SQLite
    that includes the database's own work), and the rows written."""
    from app.core.database import Database
    from app.tables import CollectionSchedule

    database = Database.from_settings(bench_settings(database_url, data_dir))
    try:
        async with database.read() as session:
            schedules = (
                await session.execute(
                    sa.select(
                        CollectionSchedule.id,
                        CollectionSchedule.org_id,
                        CollectionSchedule.preset_id,
                        CollectionSchedule.next_run_at,
                    ).order_by(CollectionSchedule.org_id, CollectionSchedule.created_at)
                )
            ).all()
    finally:
        await database.dispose()
    batches = burst_batches(schedules, batch)
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        wall, cpu = _write_sqlite(Path(url.database or ""), batches)
    else:
        wall, cpu = await _write_postgresql(url.set(drivername="postgresql"), batches)
    return {
        "seconds": wall,
        "cpu_seconds": cpu,
        "fires": sum(len(b.fires) for b in batches),
        "runs": sum(len(b.runs) for b in batches),
    }


def _insert(table: str, columns: Sequence[str], rows: int, placeholder: Any) -> str:
    """`INSERT INTO table (columns) VALUES (...), (...)` for `rows` rows."""
    width = len(columns)
    values = ", ".join(
        "(" + ", ".join(placeholder(row * width + i + 1) for i in range(width)) + ")"
        for row in range(rows)
    )
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values}"  # noqa: S608 - our names


def _write_sqlite(path: Path, batches: list[Batch]) -> tuple[float, float]:
    def value(item: Any) -> Any:  # as SQLAlchemy stores them on SQLite
        if isinstance(item, uuid.UUID):
            return item.hex
        if isinstance(item, datetime):
            return item.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        if isinstance(item, list):
            return json.dumps(item)
        if isinstance(item, Decimal):
            return float(item)
        return item

    prepared = [_flat(b, value) for b in batches]
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=NORMAL"):
            connection.execute(f"PRAGMA {pragma}")
        wall, cpu = time.perf_counter(), time.process_time()
        for statements in prepared:
            connection.execute("BEGIN IMMEDIATE")
            for table, columns, rows, params in statements:
                connection.execute(_insert(table, columns, rows, lambda _n: "?"), params)
            connection.execute("COMMIT")
        return time.perf_counter() - wall, time.process_time() - cpu
    finally:
        connection.close()


async def _write_postgresql(url: Any, batches: list[Batch]) -> tuple[float, float]:
    def value(item: Any) -> Any:  # as asyncpg takes them (json and jsonb as text)
        return json.dumps(item) if isinstance(item, list) else item

    prepared = [_flat(b, value) for b in batches]
    connection = await asyncpg.connect(url.render_as_string(hide_password=False))
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        for statements in prepared:
            async with connection.transaction():
                for table, columns, rows, params in statements:
                    sql = _insert(table, columns, rows, lambda n: f"${n}")
                    await connection.execute(sql, *params)
        return time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await connection.close()


def _flat(batch: Batch, value: Any) -> list[tuple[str, Sequence[str], int, list[Any]]]:
    """A batch's statements: table, columns, row count and the rows' values in a row."""
    tables = [
        ("collection_runs", RUN_COLUMNS, batch.runs),
        ("run_categories", CATEGORY_COLUMNS, batch.categories),
        ("collection_schedule_fires", FIRE_COLUMNS, batch.fires),
    ]
    return [
        (table, columns, len(rows), [value(item) for row in rows for item in row])
        for table, columns, rows in tables
        if rows
    ]
