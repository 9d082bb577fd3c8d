"""Benchmark: one collection run end to end, against its ideal bound, on SQLite and PostgreSQL.

What it measures
----------------
A run of N categories x P products with the offline sample providers, whose every call
sleeps `--latency-ms`. The run is driven through the service layer exactly as the app
does it (`Database.from_settings`, `build_providers`, `RunLifecycle`, `Pipeline`, `RunExecutor`;
`create_run`, `start_run` + commit, `executor.submit`), and the run row is polled every
50 ms until the run finishes. For each (database, size) it reports:

* the provider calls made (N Amazon best-seller calls, N x P eBay searches) and the
  listings stored;
* the ideal bound, (amazon calls + eBay calls) x latency / concurrency: the run keeps at
  most `run_provider_concurrency` provider calls in flight, so no run can be faster;
* the wall time from `start_run` until the run is seen completed, and wall / bound
  (the goal is at most 1.3);
* the CPU time per checkpoint (one per category, one per product): this process's CPU
  during the run (every thread: the event loop, SQLite's worker threads, and the 50 ms
  poll of the run row, a small part) divided by the checkpoints; on PostgreSQL, next to
  it, the CPU of the server's backends connected to the run's database (read from /proc
  when the server runs on this machine; its background writers are not counted). Unlike
  the ratio, these hardly depend on the machine's load;
* the process's resident memory right before the run starts (after imports and the
  migration), its peak (`ru_maxrss`), and the difference: the run's own memory, which
  should stay flat as the number of listings grows (the goal).

Each measurement runs in a fresh Python process (this script re-invoked with `--child`)
with a clean environment, against a fresh database: an SQLite file in a temporary
directory, or a PostgreSQL database created for it on the server of `--pg-url` and
dropped afterwards, even when the measurement fails.

Nothing here asserts anything about the timings: it prints a table to read.

Usage (from the repository root)::

    .venv/bin/python bench/run_pipeline.py
    .venv/bin/python bench/run_pipeline.py --db sqlite --sizes 20x50 --latency-ms 50
    .venv/bin/python bench/run_pipeline.py --db postgresql \\
        --pg-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

PostgreSQL is skipped, with a note, when the server of `--pg-url` cannot be reached
(unless `--db postgresql` was asked for explicitly, which then fails).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from benchlib import (
    DEFAULT_PG_URL,
    bench_settings,
    child_environment,
    current_rss_kib,
    databases_to_measure,
    format_table,
    peak_rss_kib,
    postgres_backends_cpu,
    postgres_database,
)
from sqlalchemy.engine import URL, make_url

if TYPE_CHECKING:
    from app.core.config import Settings

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "apps" / "api" / "src"  # the code measured: this checkout's
DEFAULT_SIZES = "5x50,20x50,40x50"
POLL_SECONDS = 0.05

# Top-level Amazon browse nodes (the sample provider gives these a fitting theme); larger
# runs add browse-node-like ids drawn from a fixed seed, so every run uses the same ones.
KNOWN_CATEGORIES = (
    "172282",
    "284507",
    "1055398",
    "165793011",
    "3375251",
    "3760911",
    "228013",
    "2619533011",
    "1064954",
    "15684181",
)


@dataclass(frozen=True, slots=True)
class Size:
    """How big a run is: `categories` categories of `products` best sellers each."""

    categories: int
    products: int

    @classmethod
    def parse(cls, text: str) -> Size:
        """`20x50` -> Size(categories=20, products=50)."""
        try:
            categories, products = (int(part) for part in text.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"size {text!r} is not CATEGORIESxPRODUCTS, e.g. 20x50"
            ) from None
        if categories < 1 or not 1 <= products <= 100:
            raise argparse.ArgumentTypeError(
                f"size {text!r}: need at least 1 category and 1 to 100 products per category"
            )
        return cls(categories, products)

    def __str__(self) -> str:
        return f"{self.categories}x{self.products}"


@dataclass(frozen=True, slots=True)
class Measurement:
    """What one child process reports about its run (one JSON line on its stdout)."""

    status: str
    amazon_calls: int
    ebay_calls: int
    provider_retries: int
    products: int
    listings: int
    sellers: int
    checkpoints: int
    wall_seconds: float
    cpu_seconds: float
    server_cpu_seconds: float | None
    amazon_phase_seconds: float
    ebay_phase_seconds: float
    rss_before_kib: int
    peak_rss_kib: int


def category_ids(count: int) -> list[str]:
    """`count` distinct, realistic Amazon browse node ids, the same on every call."""
    ids = list(KNOWN_CATEGORIES[:count])
    rng = random.Random(20_240_601)
    while len(ids) < count:
        candidate = str(rng.randrange(1_000_000, 9_999_999_999))
        if candidate not in ids:
            ids.append(candidate)
    return ids


def ideal_bound(calls: int, latency_ms: int, concurrency: int) -> float:
    """Seconds `calls` provider calls take at best, `concurrency` at a time."""
    return calls * latency_ms / 1000 / concurrency


# --- CPU ------------------------------------------------------------------------------------


def cpu_seconds() -> float:
    """CPU time (user + system) this process has used so far, every thread included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def server_cpu_since(before: dict[int, float] | None, database: str | None) -> float | None:
    """CPU time the PostgreSQL backends of `database` used since `before` (their CPU then,
    by pid; a backend that connected since counts whole); None when it cannot be read.
    A backend that ended meanwhile is missed: the pool keeps the run's connections open."""
    if before is None or database is None:
        return None
    after = postgres_backends_cpu(database)
    if not after:
        return None
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


# --- child: one measured run ------------------------------------------------------------------


async def measure_run(settings: Settings, size: Size) -> Measurement:
    """Create an organization, then drive one run through the service layer to its end."""
    # The app is imported by the child processes only (and by `parse_args`, for a default).
    from app.core.database import Database
    from app.orgs import create_org
    from app.providers import build_providers
    from app.providers.resilience import ResilientAmazonProvider, ResilientEbayProvider
    from app.runs.executor import RunExecutor
    from app.runs.leases import Leases
    from app.runs.lifecycle import RunLifecycle
    from app.runs.pipeline import Pipeline
    from app.tables import CollectionRun, RunCategory, RunListing, RunProduct, RunStatus
    from app.users import provision_user

    database = Database.from_settings(settings)
    amazon, ebay = build_providers(settings)
    if not isinstance(amazon, ResilientAmazonProvider) or not isinstance(
        ebay, ResilientEbayProvider
    ):
        raise TypeError("build_providers no longer returns the resilient wrappers this counts")
    runs = RunLifecycle(settings)
    leases = Leases(database, settings)
    executor = RunExecutor(
        leases, Pipeline(database, settings, leases, amazon=amazon, ebay=ebay), settings
    )
    try:
        await executor.start()  # as the app's lifespan does: sweep, then heartbeat
        async with database.transaction() as session:
            user_id = uuid.uuid4()
            await provision_user(session, user_id=user_id, email="bench@example.com")
            org = await create_org(session, name="Bench", admin_id=user_id)
            run = await runs.create_run(
                session,
                org_id=org.id,
                created_by=user_id,
                category_ids=category_ids(size.categories),
                products_per_category=size.products,
            )
        org_id, run_id = org.id, run.id

        server = make_url(settings.effective_database_url)
        backends = server.database if server.get_backend_name() == "postgresql" else None
        server_before = postgres_backends_cpu(backends) if backends else None
        rss_before = current_rss_kib()
        cpu_before = cpu_seconds()
        started = time.perf_counter()
        async with database.sessions() as session:
            await runs.start_run(session, org_id=org_id, run_id=run_id)
            await session.commit()
        if not await executor.submit(run_id):
            raise RuntimeError(f"the executor did not take run {run_id}")
        while True:
            executing = run_id in executor.running  # read before the status: see below
            async with database.read() as session:
                status = await session.scalar(
                    sa.select(CollectionRun.status).where(CollectionRun.id == run_id)
                )
            if status != RunStatus.RUNNING:
                break
            if not executing:
                # The final status is committed before the task ends, so this is a run
                # the executor gave up on (an unexpected error, logged on stderr).
                raise RuntimeError(f"run {run_id} stopped executing while still running")
            await asyncio.sleep(POLL_SECONDS)
        wall = time.perf_counter() - started
        cpu = cpu_seconds() - cpu_before
        server_cpu = server_cpu_since(server_before, backends)
        peak = peak_rss_kib()

        async with database.read() as session:
            run = await session.get_one(CollectionRun, run_id)
            amazon_done = await session.scalar(
                sa.select(sa.func.max(RunCategory.done_at)).where(RunCategory.run_id == run_id)
            )
            listings = await session.scalar(
                sa.select(sa.func.count()).where(RunListing.run_id == run_id)
            )
            products = await session.scalar(
                sa.select(sa.func.count()).where(RunProduct.run_id == run_id)
            )
        if status != RunStatus.COMPLETED:
            raise RuntimeError(f"run {run_id} ended {status}: {run.error}")
        if run.started_at is None or run.finished_at is None or amazon_done is None:
            raise RuntimeError(f"run {run_id} completed without its timestamps")
        return Measurement(
            status=str(status),
            amazon_calls=amazon.calls,
            ebay_calls=ebay.calls,
            provider_retries=amazon.retries + ebay.retries,
            products=products or 0,
            listings=listings or 0,
            sellers=run.sellers_found,
            checkpoints=run.categories_done + run.products_searched,
            wall_seconds=wall,
            cpu_seconds=cpu,
            server_cpu_seconds=server_cpu,
            amazon_phase_seconds=(amazon_done - run.started_at).total_seconds(),
            ebay_phase_seconds=(run.finished_at - amazon_done).total_seconds(),
            rss_before_kib=rss_before,
            peak_rss_kib=peak,
        )
    finally:
        await executor.drain(0)
        await database.dispose()


def child_main(args: argparse.Namespace) -> None:
    """Migrate the fresh database, measure one run, print the result as one JSON line."""
    from app.migrate import upgrade

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    settings = bench_settings(
        args.database_url,
        args.data_dir,
        sample_provider_latency_ms=args.latency_ms,
        run_provider_concurrency=args.concurrency,
    )
    upgrade(settings)  # Alembic runs its own event loop, so before ours
    measurement = asyncio.run(measure_run(settings, args.size))
    print(json.dumps(asdict(measurement)), flush=True)


# --- parent: fresh databases, one child per measurement, the table ---------------------------


def run_child(
    database_url: str, data_dir: Path, size: Size, latency_ms: int, concurrency: int
) -> Measurement:
    """Measure one run in a fresh interpreter; its log lines go to our stderr."""
    timeout = 120 + 20 * ideal_bound(size.categories * (1 + size.products), latency_ms, 1)
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--database-url",
        database_url,
        "--data-dir",
        str(data_dir),
        "--sizes",
        str(size),
        "--latency-ms",
        str(latency_ms),
        "--concurrency",
        str(concurrency),
    ]
    completed = subprocess.run(
        command,
        stdout=subprocess.PIPE,
        text=True,
        env={**child_environment(), "PYTHONPATH": str(SOURCE)},
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"measurement {size} failed (exit {completed.returncode})")
    last_line = completed.stdout.strip().splitlines()[-1]
    return Measurement(**json.loads(last_line))


def measure(db: str, size: Size, latency_ms: int, concurrency: int, pg_server: URL) -> Measurement:
    """One measurement of `size` on a fresh database of kind `db`."""
    with tempfile.TemporaryDirectory(prefix="bench-run-pipeline-") as tmp:
        data_dir = Path(tmp)
        if db == "sqlite":
            url = f"sqlite+aiosqlite:///{data_dir / 'collection.db'}"
            return run_child(url, data_dir, size, latency_ms, concurrency)
        with postgres_database(pg_server, "bench_run_pipeline") as url:
            return run_child(url, data_dir, size, latency_ms, concurrency)


COLUMNS = (
    "db",
    "size",
    "amazon calls",
    "eBay calls",
    "listings",
    "bound (s)",
    "wall (s)",
    "ratio",
    "CPU/checkpoint (ms)",
    "server CPU/checkpoint (ms)",
    "RSS before (MiB)",
    "peak RSS (MiB)",
    "run's RSS (MiB)",
)


def table_row(
    db: str, size: Size, result: Measurement, latency_ms: int, concurrency: int
) -> list[str]:
    """The printed cells of one measurement."""
    bound = ideal_bound(result.amazon_calls + result.ebay_calls, latency_ms, concurrency)
    ratio = f"{result.wall_seconds / bound:.2f}x" if bound > 0 else "n/a"
    mib = 1024
    per_checkpoint = 1000 / max(1, result.checkpoints)
    server = result.server_cpu_seconds
    return [
        db,
        f"{size.categories} x {size.products}",
        str(result.amazon_calls),
        str(result.ebay_calls),
        str(result.listings),
        f"{bound:.2f}",
        f"{result.wall_seconds:.2f}",
        ratio,
        f"{result.cpu_seconds * per_checkpoint:.2f}",
        "n/a" if server is None else f"{server * per_checkpoint:.2f}",
        f"{result.rss_before_kib / mib:.1f}",
        f"{result.peak_rss_kib / mib:.1f}",
        f"{(result.peak_rss_kib - result.rss_before_kib) / mib:+.1f}",
    ]


def server_cpu_note(result: Measurement) -> str:
    """`, PostgreSQL backends' CPU x s`, or nothing when not measured."""
    if result.server_cpu_seconds is None:
        return ""
    return f", PostgreSQL backends' CPU {result.server_cpu_seconds:.2f} s"


def parent_main(args: argparse.Namespace) -> int:
    """Measure every (database, size), then print the machine, the parameters and the table."""
    pg_server = make_url(args.pg_url)
    databases, notes = databases_to_measure(args.db, pg_server)

    rows: list[list[str]] = []
    details: list[str] = []
    for db in databases:
        for size in args.sizes:
            print(f"measuring {db} {size} ...", file=sys.stderr, flush=True)
            try:
                result = measure(db, size, args.latency_ms, args.concurrency, pg_server)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                print(f"{db} {size}: {exc}", file=sys.stderr)
                return 1
            rows.append(table_row(db, size, result, args.latency_ms, args.concurrency))
            details.append(
                f"{db} {size}: {result.status}; Amazon phase {result.amazon_phase_seconds:.2f} s,"
                f" eBay phase {result.ebay_phase_seconds:.2f} s; benchmark process CPU during"
                f" the run {result.cpu_seconds:.2f} s{server_cpu_note(result)};"
                f" {result.checkpoints} checkpoints, {result.products} products,"
                f" {result.sellers} sellers, {result.provider_retries} provider retries"
            )

    print(
        f"Machine: {os.cpu_count()} CPUs, {platform.machine()}, {platform.system()}; "
        f"Python {platform.python_version()} ({platform.python_implementation()})"
    )
    print(
        f"Parameters: sample providers at {args.latency_ms} ms per call, "
        f"run_provider_concurrency={args.concurrency}, sizes {', '.join(map(str, args.sizes))} "
        "(categories x products per category); one fresh process and database per row"
    )
    print("Bound = (Amazon calls + eBay calls) x latency / concurrency; ratio = wall / bound")
    print(
        "CPU/checkpoint = this process's CPU during the run / checkpoints (one per category"
        " and per product); server CPU/checkpoint = that of the PostgreSQL backends of the"
        " run's database (n/a: SQLite, or a server /proc cannot see)"
    )
    print(
        "Load average when done (1, 5, 15 min): " + ", ".join(f"{v:.2f}" for v in os.getloadavg())
    )
    print("RSS before = resident memory after imports and migration; run's RSS = peak - before")
    for note in notes:
        print(note)
    print()
    print(format_table(COLUMNS, rows))
    print()
    for line in details:
        print(line)
    return 0


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer no smaller than `minimum`."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; `--child` and its options are for the script's own use."""
    from app.core.config import Settings

    default_concurrency = Settings.model_fields["run_provider_concurrency"].default
    parser = argparse.ArgumentParser(
        description="Time a collection run against its ideal bound and measure its memory, "
        "on SQLite and PostgreSQL.",
    )
    parser.add_argument(
        "--db",
        choices=("sqlite", "postgresql", "both"),
        default="both",
        help="database(s) to measure (default: both; PostgreSQL is skipped if unreachable)",
    )
    parser.add_argument(
        "--latency-ms",
        type=int_at_least(0),
        default=50,
        help="simulated latency of every sample provider call (default: 50)",
    )
    parser.add_argument(
        "--concurrency",
        type=int_at_least(1),
        default=default_concurrency,
        help=f"run_provider_concurrency (default: the setting's default, {default_concurrency})",
    )
    parser.add_argument(
        "--sizes",
        type=lambda text: [Size.parse(part) for part in text.split(",") if part.strip()],
        default=[Size.parse(part) for part in DEFAULT_SIZES.split(",")],
        help=f"comma-separated CATEGORIESxPRODUCTS run sizes (default: {DEFAULT_SIZES})",
    )
    parser.add_argument(
        "--pg-url",
        default=DEFAULT_PG_URL,
        help="a database URL on the PostgreSQL server to use; benchmark databases are "
        f"created next to it and dropped afterwards (default: {DEFAULT_PG_URL})",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        if len(args.sizes) != 1 or not args.database_url or args.data_dir is None:
            parser.error("--child needs one size, --database-url and --data-dir")
        args.size = args.sizes[0]
    return args


def main() -> int:
    args = parse_args()
    if args.child:
        child_main(args)
        return 0
    # Turn `kill` into an exception too, so that the temporary databases are dropped.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    return parent_main(args)


if __name__ == "__main__":
    sys.exit(main())
