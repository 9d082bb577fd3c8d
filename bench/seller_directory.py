"""Benchmark: the seller directory — 100,000 sellers across 200 runs, a page of it.

What it measures
----------------
On a fresh database (an SQLite file, or a PostgreSQL database created on `--pg-url` and
dropped afterwards), through the service functions the API calls, acting as a member of
the organization (so PostgreSQL's row-level security policies apply, as in a request):

* **recording a run**: `--runs` completed runs (default 200) of `--presets` presets (4,
  taking turns, one hour apart), each seeing `--per-run` sellers (2,500) with skewed
  product counts and ranks, are recorded one by one with `app.runs.directory.record_run`,
  the statement the pipeline runs when a run completes (its p50 and slowest are shown).
  Each preset has its own pool of `--sellers` / presets sellers (default 25,000); each run
  keeps most of its preset's previous run's sellers and replaces the rest with sellers not
  seen yet, so the directory ends with `--sellers` sellers (100,000).
* **pages**: the first page of 50 in the default order (last seen, newest first) and in
  every other order; one preset's; a search matching about 1 % of the names, and one
  matching none (every row of the scope is read); a page half-way through by cursor; and
  one seller's page (history over 50 runs, current listings); the home page's cards (what
  each preset's latest run gained and lost, app.runs.dashboard).
* **peer**: the first page computed per request from the runs' results, the way it would
  be without the directory: `run_sellers` of the organization's completed runs grouped by
  seller (first and last seen and runs seen only; rank and trend would cost more).

Times are wall clock, median and slowest of `--repeat` reads, in this process (the HTTP
layer is not included). CPU is this process's CPU per read: on SQLite it includes the
database's work, on PostgreSQL not (the server is another process). On PostgreSQL the
directory is vacuumed and analyzed every 5 runs (`VACUUM_EVERY`), as autovacuum would be
between runs made hours or days apart. Goal (issue 16):
"seller directory of 100,000 sellers across 200 runs: first page under 200 ms".

Usage (from the repository root)::

    .venv/bin/python bench/seller_directory.py
    .venv/bin/python bench/seller_directory.py --db sqlite --per-run 1000 --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (
    DEFAULT_PG_URL,
    bench_settings,
    measure_each_database,
    timed,
)

PAGE = 50
T0 = datetime(2026, 1, 1, tzinfo=UTC)
INSERT_BATCH = 2_500


def plan_runs(args: argparse.Namespace) -> list[tuple[int, list[str]]]:
    """Each run's preset (its index) and the sellers it sees, drifting run by run."""
    rng = random.Random(7)
    per_preset = args.sellers // args.presets
    runs_per_preset = args.runs // args.presets
    churn = (per_preset - args.per_run) / max(1, (runs_per_preset - 1) * args.per_run)
    current: dict[int, list[str]] = {}
    fresh: dict[int, int] = {}
    plan = []
    for number in range(args.runs):
        preset = number % args.presets
        if preset not in current:
            current[preset] = [f"p{preset}-seller-{i}" for i in range(args.per_run)]
            fresh[preset] = args.per_run
        else:
            kept = []
            for name in current[preset]:
                if rng.random() < churn and fresh[preset] < per_preset:
                    name = f"p{preset}-seller-{fresh[preset]}"
                    fresh[preset] += 1
                kept.append(name)
            current[preset] = kept
        plan.append((preset, list(current[preset])))
    return plan


def ranked(sellers: list[str], rng: random.Random) -> list[dict[str, Any]]:
    """The sellers' figures in a run, ranked as `sellers.finish` ranks them."""
    rows = []
    for name in sellers:
        products = 1 + int(40 * rng.random() ** 4)
        rows.append(
            {"username": name, "products": products, "listings": products + rng.randint(0, 3)}
        )
    rows.sort(key=lambda row: (-row["products"], -row["listings"], row["username"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


async def seed(
    database: Any, args: argparse.Namespace
) -> tuple[uuid.UUID, uuid.UUID, list[uuid.UUID], list[float]]:
    """The organization, a member, its presets and runs; the runs recorded one by one.
    Returns the organization, the member, the presets and each recording's time (ms)."""
    from app.runs import directory
    from app.tables import (
        CategoryPreset,
        CollectionRun,
        Membership,
        Organization,
        Role,
        RunListing,
        RunProduct,
        RunSeller,
        RunStatus,
        User,
    )

    org_id, user_id = uuid.uuid4(), uuid.uuid4()
    presets = [uuid.uuid4() for _ in range(args.presets)]
    async with database.transaction() as session:
        session.add(Organization(id=org_id, name="bench"))
        session.add(User(id=user_id, email="bench@example.com"))
        await session.flush()
        session.add(Membership(org_id=org_id, user_id=user_id, role=Role.MEMBER))
        for number, preset_id in enumerate(presets):
            session.add(
                CategoryPreset(
                    org_id=org_id, id=preset_id, name=f"preset {number}", category_ids=[str(number)]
                )
            )
    rng = random.Random(11)
    plan = plan_runs(args)
    last_of_preset = {preset: number for number, (preset, _) in enumerate(plan)}
    recordings = []
    for number, (preset, sellers) in enumerate(plan):
        run_id = uuid.uuid4()
        figures = ranked(sellers, rng)
        async with database.transaction() as session:
            session.add(
                CollectionRun(
                    id=run_id,
                    org_id=org_id,
                    name=f"run {number}",
                    status=RunStatus.COMPLETED,
                    preset_id=presets[preset],
                    category_ids=[str(preset)],
                    products_per_category=50,
                    listings_per_product=10,
                    created_at=T0 + timedelta(hours=number),
                    finished_at=T0 + timedelta(hours=number, minutes=30),
                    directory_recorded_at=T0 + timedelta(hours=number, minutes=30),
                )
            )
            await session.flush()
            for start in range(0, len(figures), INSERT_BATCH):
                batch = [{"run_id": run_id, **row} for row in figures[start : start + INSERT_BATCH]]
                await session.execute(RunSeller.__table__.insert(), batch)
            if last_of_preset[preset] == number:  # current listings for the seller pages
                await session.execute(
                    RunProduct.__table__.insert(),
                    [
                        {
                            "run_id": run_id,
                            "asin": f"B{p:09d}",
                            "category_id": str(preset),
                            "category_position": 0,
                            "sales_rank": p + 1,
                            "title": f"Product {p}",
                            "price": Decimal("19.99"),
                            "currency": "USD",
                            "upcs": [],
                            "eans": [],
                        }
                        for p in range(50)
                    ],
                )
                listing_rows = [
                    {
                        "run_id": run_id,
                        "asin": f"B{(i + j) % 50:09d}",
                        "item_id": f"v1|{i}|{j}",
                        "title": "A listing",
                        "price": Decimal("24.99"),
                        "currency": "USD",
                        "seller_username": row["username"],
                        "seller_feedback_score": 100,
                        "seller_feedback_percentage": Decimal("99.5"),
                        "url": "https://www.ebay.com/itm/1",
                    }
                    for i, row in enumerate(figures)
                    for j in range(min(row["products"], 50))
                ]
                for start in range(0, len(listing_rows), INSERT_BATCH):
                    await session.execute(
                        RunListing.__table__.insert(), listing_rows[start : start + INSERT_BATCH]
                    )
        completed = directory.CompletedRun(
            run_id, org_id, presets[preset], [str(preset)], T0 + timedelta(hours=number)
        )
        started = time.perf_counter()
        async with database.transaction() as session:  # what it adds to the run's finish
            await directory.record_run(session, completed)
        recordings.append((time.perf_counter() - started) * 1000)
        if database.dialect == "postgresql" and number % VACUUM_EVERY == VACUUM_EVERY - 1:
            await vacuum(database)
    return org_id, user_id, presets, recordings


VACUUM_EVERY = 5
"""Runs between two VACUUM ANALYZEs of the directory on PostgreSQL, standing in for
autovacuum: by default it visits a table once a fifth of its rows changed, which the
recording of about five runs does here. Runs days apart give it all the time it needs;
without it, the 200 runs recorded back to back leave five dead versions of every row and
stale statistics, which no live database has."""


async def vacuum(database: Any) -> None:
    async with database.engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        for table in ("seller_directory", "seller_directory_scopes"):
            await autocommit.execute(sa.text(f"VACUUM ANALYZE {table}"))


def peer_first_page(org_id: uuid.UUID) -> Any:
    """The first page without the directory: aggregated from the runs' results."""
    from app.tables import CollectionRun, RunSeller, RunStatus

    last_seen = sa.func.max(CollectionRun.created_at)
    return (
        sa.select(
            RunSeller.username,
            sa.func.min(CollectionRun.created_at),
            last_seen,
            sa.func.count(),
        )
        .join(CollectionRun, CollectionRun.id == RunSeller.run_id)
        .where(CollectionRun.org_id == org_id, CollectionRun.status == RunStatus.COMPLETED)
        .group_by(RunSeller.username)
        .order_by(last_seen.desc(), RunSeller.username)
        .limit(PAGE)
    )


async def measure(db: str, url: str, data_dir: Path, args: argparse.Namespace) -> list[list[str]]:
    from app.core.database import SYSTEM, Database, DbActor, acting_as
    from app.directory_tables import DIRECTORY_ALL, DirectorySeller
    from app.migrate import upgrade
    from app.runs import dashboard, directory_pages

    settings = bench_settings(url, data_dir)
    await asyncio.to_thread(upgrade, settings)  # Alembic runs its own event loop
    database = Database.from_settings(settings)
    rows: list[list[str]] = []

    def row(what: str, figures: tuple[float, float, float], goal: str = "< 200 ms") -> None:
        p50, worst, cpu = figures
        rows.append([db, what, f"{p50:.1f}", f"{worst:.1f}", f"{cpu:.1f}", goal])

    try:
        started = time.perf_counter()
        with acting_as(SYSTEM):
            org_id, user_id, presets, recordings = await seed(database, args)
        async with database.read() as session:
            sellers = await session.scalar(
                sa.select(sa.func.count()).where(
                    DirectorySeller.org_id == org_id, DirectorySeller.scope_id == DIRECTORY_ALL
                )
            )
        print(
            f"{db}: {args.runs} runs, {sellers:,} sellers written and recorded in "
            f"{time.perf_counter() - started:.0f} s",
            file=sys.stderr,
        )
        rows.append(
            [
                db,
                f"recording a completed run of {args.per_run:,} sellers",
                f"{statistics.median(recordings):.1f}",
                f"{max(recordings):.1f}",
                "",
                "once per run",
            ]
        )
        member = DbActor(user_id=user_id, org_id=org_id)

        async def page(**options: Any) -> Any:
            with acting_as(member):
                async with database.read() as session:
                    return await directory_pages.list_directory(
                        session, org_id=org_id, limit=PAGE, **options
                    )

        label = f"{sellers:,} sellers, {args.runs} runs"
        row(f"first page, last seen ({label})", await timed(args.repeat, page))
        for sort in ("rank", "products", "runs_seen", "first_seen", "username"):
            row(f"first page by {sort}", await timed(args.repeat, lambda s=sort: page(sort=s)))
        row(
            "first page, last seen ascending",
            await timed(args.repeat, lambda: page(descending=False)),
        )
        row(
            "first page of one preset", await timed(args.repeat, lambda: page(preset_id=presets[0]))
        )
        row(
            "search matching ~1 % (q=seller-12)",
            await timed(args.repeat, lambda: page(query="seller-12")),
        )
        row(
            "search matching none (reads the scope)",
            await timed(args.repeat, lambda: page(query="nobody")),
        )

        cursor = None
        for _ in range(sellers // PAGE // 2 // 4):  # half-way, by pages of 4 x 50
            with acting_as(member):
                async with database.read() as session:
                    _, cursor = await directory_pages.list_directory(
                        session, org_id=org_id, limit=4 * PAGE, cursor=cursor
                    )
        row(
            "page half-way through, by cursor",
            await timed(args.repeat, lambda: page(cursor=cursor)),
        )

        async def seller() -> None:
            with acting_as(member):
                async with database.read() as session:
                    await directory_pages.seller_detail(
                        session, org_id=org_id, username="p0-seller-0"
                    )

        history = f"one seller: history over {args.runs // args.presets} runs, listings"
        row(history, await timed(args.repeat, seller))

        async def cards() -> None:
            with acting_as(member):
                async with database.read() as session:
                    await dashboard.since_last_run(session, org_id=org_id)

        row(
            f"home page cards: {args.presets} presets gained/lost ({args.per_run:,} per run)",
            await timed(args.repeat, cards),
            "",
        )

        async def peer() -> None:
            with acting_as(member):
                async with database.read() as session:
                    (await session.execute(peer_first_page(org_id))).all()

        row("peer: first page aggregated from the runs' results", await timed(3, peer), "")
    finally:
        await database.dispose()
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--db", choices=["both", "sqlite", "postgresql"], default="both")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="a PostgreSQL server to use")
    parser.add_argument("--sellers", type=int, default=100_000, help="distinct sellers in all")
    parser.add_argument("--runs", type=int, default=200, help="completed runs")
    parser.add_argument("--presets", type=int, default=4, help="presets the runs take turns of")
    parser.add_argument("--per-run", type=int, default=2_500, help="sellers each run sees")
    parser.add_argument("--repeat", type=int, default=20, help="reads per measurement")
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args()
    return measure_each_database(
        args.db, args.pg_url, "bench-directory", lambda db, url, tmp: measure(db, url, tmp, args)
    )


if __name__ == "__main__":
    raise SystemExit(main())
