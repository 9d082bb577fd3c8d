"""Benchmark: what counting a call in the shared daily budget costs, next to counting it in
the process.

The eBay Browse API allows a number of calls a day per application; every instance of the
service counts its calls in one row of `provider_call_counts` (an atomic upsert that never
goes past the limit), so replicas cannot overspend between them. The peer is the
in-process counter (`DailyCallBudget`), which costs nothing and lets N replicas spend N
times the limit.

For each budget, `--takes` calls are counted three ways: one after another (the cost a
lone call pays); by `--in-flight` workers that each count, then spend about `--call-ms` on
the call itself (0.5-1.5 times it, at random: calls do not return in lockstep), as a run's
provider slots do (the cost under a run's real contention); and by
`--in-flight` workers counting back to back (saturation: what the table can absorb, far
beyond eBay's 5,000 calls a day). On each database, a second row counts the calls charged
to an organization whose run waits for calls next to three others' (what a run's calls
cost with the fair share of `app.providers.fair_share`: the day's row locked, the
organizations waiting read, both counts written, in one transaction). Each database is
fresh and migrated: an SQLite file in a temporary directory, or a PostgreSQL database
created on `--pg-url` and dropped afterwards.

Nothing is asserted: the script prints a table. Usage (from the repository root)::

    .venv/bin/python bench/budget.py
    .venv/bin/python bench/budget.py --db sqlite --takes 5000
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import (
    DEFAULT_PG_URL,
    bench_settings,
    databases_to_measure,
    format_table,
    percentile,
    postgres_database,
)
from sqlalchemy.engine import URL, make_url


@contextmanager
def fresh_database(db: str, pg_server: URL) -> Iterator[Any]:
    """Settings of a new, migrated database."""
    from app.migrate import upgrade

    with tempfile.TemporaryDirectory(prefix="bench-budget-") as tmp:
        data_dir = Path(tmp)
        if db == "sqlite":
            settings = bench_settings(f"sqlite+aiosqlite:///{data_dir / 'collection.db'}", data_dir)
            upgrade(settings)
            yield settings
            return
        with postgres_database(pg_server, "bench_budget") as url:
            settings = bench_settings(url, data_dir)
            upgrade(settings)
            yield settings


async def timed(
    take: Callable[[], Awaitable[None]], count: int, in_flight: int, call_seconds: float = 0.0
) -> list[float]:
    """The duration of each of `count` takes, in ms, by `in_flight` workers that each spend
    `call_seconds` after a take (the provider call it paid for)."""
    durations: list[float] = []
    remaining = count
    jitter = random.Random(7)

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            await take()
            durations.append((time.perf_counter() - started) * 1000)
            if call_seconds:
                await asyncio.sleep(call_seconds * jitter.uniform(0.5, 1.5))

    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return durations


async def measure(
    settings: Any | None, args: argparse.Namespace, *, charged: bool = False
) -> list[tuple[str, int, list[float], float]]:
    """(pace, workers, durations, wall seconds) of each measurement, for the shared budget
    on `settings`' database, or for the in-process budget when `settings` is None.

    `charged`: each call is charged to an organization whose run waits for calls next to
    three other organizations' (the fair share's take: the day's row locked, the
    organizations waiting read, both counts written)."""
    from app.core.database import Database
    from app.providers.ebay import budget_terms, daily_budget
    from app.providers.fair_share import charged_to

    database = Database.from_settings(settings) if settings is not None else None
    limit = 10 * args.takes  # never reached: this measures counting, not refusing
    try:
        terms = budget_terms(limit, setting="EBAY_DAILY_CALL_LIMIT", turn=25)
        budget = daily_budget(limit, database=database, terms=terms)
        org_id = None
        if charged and database is not None:
            org_id = (await organizations_waiting(database, 4))[0]

        async def take() -> None:
            if org_id is None:
                await budget.take()
                return
            with charged_to(org_id):
                await budget.take()

        await timed(take, 50, 1)  # warm up: connections, statement caches
        results = []
        for pace, in_flight, call_ms in paces(args):
            started = time.perf_counter()
            durations = await timed(take, args.takes, in_flight, call_ms / 1000)
            results.append((pace, in_flight, durations, time.perf_counter() - started))
        counted = await budget.used()
        expected = 50 + len(results) * args.takes
        if counted != expected:
            raise SystemExit(f"the budget counted {counted} calls, expected {expected}")
        return results
    finally:
        if database is not None:
            await database.dispose()


async def organizations_waiting(database: Any, count: int) -> list[Any]:
    """`count` organizations, each with a run in its eBay phase (products enough for the
    day's budget to cover them all: no turns, the common case)."""
    from datetime import timedelta

    from app.tables import CollectionRun, Organization, RunPhase, RunStatus

    now = datetime.now(UTC)
    org_ids = []
    async with database.transaction() as session:
        for n in range(count):
            org = Organization(name=f"bench {n}")
            session.add(org)
            await session.flush()
            session.add(
                CollectionRun(
                    org_id=org.id,
                    name="bench",
                    status=RunStatus.RUNNING,
                    phase=RunPhase.EBAY,
                    category_ids=["1"],
                    categories_total=1,
                    categories_done=1,
                    products_per_category=50,
                    listings_per_product=20,
                    products_found=50,
                    lease_owner="bench:1",
                    lease_expires_at=now + timedelta(hours=1),
                    started_at=now,
                )
            )
            org_ids.append(org.id)
    return org_ids


def paces(args: argparse.Namespace) -> list[tuple[str, int, float]]:
    """(pace, workers, ms spent per call after its take) of each measurement."""
    return [
        ("one after another", 1, 0.0),
        (f"a run's slots, {args.call_ms:g} ms calls", args.in_flight, args.call_ms),
        ("back to back (saturation)", args.in_flight, 0.0),
    ]


def rows_for(name: str, results: Sequence[tuple[str, int, list[float], float]]) -> list[list[str]]:
    rows = []
    for pace, in_flight, durations, wall in results:
        mean = statistics.fmean(durations)
        rows.append(
            [
                name,
                pace,
                str(in_flight),
                f"{mean:.3f}",
                f"{percentile(durations, 0.5):.3f}",
                f"{percentile(durations, 0.99):.3f}",
                f"{len(durations) / wall:,.0f}",
            ]
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--db", choices=["both", "sqlite", "postgresql"], default="both")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="a PostgreSQL server to use")
    parser.add_argument("--takes", type=int, default=2000, help="calls counted per measurement")
    parser.add_argument("--in-flight", type=int, default=8, help="workers (a run's concurrency)")
    parser.add_argument("--call-ms", type=float, default=100.0, help="a Browse call's duration")
    args = parser.parse_args(argv)

    pg_server = make_url(args.pg_url)
    databases, notes = databases_to_measure(args.db, pg_server)

    rows = rows_for("in the process (peer)", asyncio.run(measure(None, args)))
    for db in databases:
        with fresh_database(db, pg_server) as settings:
            rows += rows_for(f"shared, {db}", asyncio.run(measure(settings, args)))
        with fresh_database(db, pg_server) as settings:
            charged = asyncio.run(measure(settings, args, charged=True))
            rows += rows_for(f"shared, {db}, charged to an org", charged)

    print(
        f"{datetime.now(UTC):%Y-%m-%d} · {platform.node()} · {platform.machine()} · "
        f"Python {platform.python_version()} · {args.takes} takes per row"
    )
    print()
    columns = ["budget", "pace", "workers", "mean ms", "p50 ms", "p99 ms", "takes/s"]
    print(format_table(columns, rows, text_columns=2))
    for note in notes:
        print(f"- {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
