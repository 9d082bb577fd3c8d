"""Benchmark: several organizations' runs under a tight eBay budget, shared in turns (the
fair share) next to first come, first served (the behaviour before it), in the same run.

One organization starts a big run first; once it has taken `--head-start` calls, the
others start smaller runs. Together they need more calls than the day's budget
(`SAMPLE_EBAY_DAILY_CALL_LIMIT`: the offline sample eBay provider counted as eBay is).
Each mode runs on a fresh database, in one instance (one executor running every run at
once, as `collection-api serve` does), until every run has completed or waits for the
budget's next day. Per organization it prints the calls it needed and took, its share of
the budget, the fair share (the day's totals evened out: what the turns aim at), and when
it finished, or when it took its last call before waiting for tomorrow.

Nothing is asserted: the script prints a table. Usage (from the repository root)::

    .venv/bin/python bench/fair_budget.py
    .venv/bin/python bench/fair_budget.py --db postgresql --budget 1000 --orgs 6
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from benchlib import (
    DEFAULT_PG_URL,
    bench_settings,
    databases_to_measure,
    format_table,
    postgres_database,
)
from sqlalchemy.engine import URL, make_url

POLL_SECONDS = 0.05
PARKED = timedelta(hours=1)
"""A run waiting longer than this waits for the budget's next day."""


@dataclass(frozen=True, slots=True)
class OrgResult:
    """What one organization's run needed and got."""

    name: str
    needed: int
    took: int
    fair: int
    finished_after: float
    completed: bool


async def measure_mode(settings: Any, args: argparse.Namespace) -> tuple[list[OrgResult], float]:
    """Drive every organization's run to its end (or to tomorrow's budget) on a migrated
    database; the result of each organization and the CPU seconds per eBay call."""
    from app.core.database import Database
    from app.orgs import create_org
    from app.providers import build_providers
    from app.providers.budget_tables import ProviderOrgCallCount
    from app.runs.executor import RunExecutor
    from app.runs.leases import Leases
    from app.runs.lifecycle import RunLifecycle
    from app.runs.pipeline import Pipeline
    from app.tables import CollectionRun, RunStatus
    from app.users import provision_user

    database = Database.from_settings(settings)
    amazon, ebay = build_providers(settings, database=database)
    runs = RunLifecycle(settings)
    leases = Leases(database, settings)
    pipeline = Pipeline(database, settings, leases, amazon=amazon, ebay=ebay)
    executor = RunExecutor(leases, pipeline, settings)
    sizes = [args.big] + [args.small] * (args.orgs - 1)
    try:
        await executor.start()
        run_ids: list[uuid.UUID] = []
        org_ids: list[uuid.UUID] = []
        async with database.transaction() as session:
            for index, categories in enumerate(sizes):
                user_id = uuid.uuid4()
                await provision_user(session, user_id=user_id, email=f"o{index}@example.com")
                org = await create_org(session, name=f"org {chr(65 + index)}", admin_id=user_id)
                first = 1000 + 100 * index
                run = await runs.create_run(
                    session,
                    org_id=org.id,
                    created_by=user_id,
                    category_ids=[str(first + n) for n in range(categories)],
                    products_per_category=args.products,
                )
                org_ids.append(org.id)
                run_ids.append(run.id)

        async def start(run_id: uuid.UUID) -> None:
            async with database.sessions() as session:
                await runs.start_run(session, org_id=org_ids[run_ids.index(run_id)], run_id=run_id)
                await session.commit()
            if not await executor.submit(run_id):
                raise RuntimeError(f"the executor did not take run {run_id}")

        async def taken() -> dict[uuid.UUID, tuple[int, Any]]:
            async with database.read() as session:
                rows = await session.execute(
                    sa.select(
                        ProviderOrgCallCount.org_id,
                        ProviderOrgCallCount.calls,
                        ProviderOrgCallCount.last_call_at,
                    )
                )
                return {org_id: (calls, last) for org_id, calls, last in rows}

        cpu_before = time.process_time()
        await start(run_ids[0])
        while True:  # the others start once the first has its head start
            if (await taken()).get(org_ids[0], (0, None))[0] >= args.head_start:
                break
            await asyncio.sleep(0.005)
        for run_id in run_ids[1:]:
            await start(run_id)
        while True:
            async with database.read() as session:
                rows = list(
                    await session.execute(
                        sa.select(
                            CollectionRun.id,
                            CollectionRun.status,
                            CollectionRun.resumes_at,
                            CollectionRun.started_at,
                            CollectionRun.finished_at,
                        ).where(CollectionRun.id.in_(run_ids))
                    )
                )
            now = pipeline.clock()
            began = min(row.started_at for row in rows if row.started_at is not None)
            if all(
                row.status is RunStatus.COMPLETED
                or (row.resumes_at is not None and row.resumes_at - now > PARKED)
                for row in rows
            ):
                break
            if any(row.status not in (RunStatus.RUNNING, RunStatus.COMPLETED) for row in rows):
                raise RuntimeError(f"a run ended otherwise: {rows}")
            await asyncio.sleep(POLL_SECONDS)
        cpu = time.process_time() - cpu_before
        counts = await taken()
        finished = {row.id: row.finished_at for row in rows}
        needs = [categories * args.products for categories in sizes]
        fair = _fair_totals(needs, min(args.head_start, needs[0]), args.budget)
        results = []
        for index, (org_id, run_id) in enumerate(zip(org_ids, run_ids, strict=True)):
            calls, last_call_at = counts.get(org_id, (0, None))
            end = finished[run_id] or last_call_at
            results.append(
                OrgResult(
                    name=f"org {chr(65 + index)}",
                    needed=needs[index],
                    took=calls,
                    fair=fair[index],
                    finished_after=(end - began).total_seconds() if end and began else 0.0,
                    completed=finished[run_id] is not None,
                )
            )
        total = sum(result.took for result in results)
        return results, cpu / max(1, total)
    finally:
        await executor.stop()
        await database.dispose()


def _fair_totals(needs: Sequence[int], head: int, budget: int) -> list[int]:
    """What each organization ends the day with when the others start once the first has
    `head` calls and from then on the day's totals are evened out (water-filling)."""
    from app.providers.fair_share import Taker, fair_share

    starts = [head] + [0] * (len(needs) - 1)
    takers = [
        Taker(uuid.uuid4(), start, need - start) for start, need in zip(starts, needs, strict=True)
    ]
    left = budget - head
    return [
        start + fair_share(taker, [t for t in takers if t is not taker], left)
        for start, taker in zip(starts, takers, strict=True)
    ]


def measure(db: str, url: str, data_dir: Path, args: argparse.Namespace, turn: int) -> Any:
    """One mode on a fresh, migrated database."""
    from app.migrate import upgrade

    settings = bench_settings(
        url,
        data_dir,
        sample_ebay_daily_call_limit=args.budget,
        ebay_fair_turn_calls=turn,
        sample_provider_latency_ms=args.latency_ms,
        run_max_concurrent=args.orgs,
        scheduler_enabled=False,
    )
    upgrade(settings)
    return asyncio.run(measure_mode(settings, args))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--orgs", type=int, default=4, help="organizations, one run each")
    parser.add_argument("--budget", type=int, default=650, help="eBay calls a day for all")
    parser.add_argument("--big", type=int, default=10, help="categories of the first run")
    parser.add_argument("--small", type=int, default=2, help="categories of the others' runs")
    parser.add_argument("--products", type=int, default=50, help="products per category")
    parser.add_argument(
        "--head-start", type=int, default=300, help="calls of the first run before the others"
    )
    parser.add_argument("--turn", type=int, default=25, help="EBAY_FAIR_TURN_CALLS")
    parser.add_argument("--latency-ms", type=int, default=100, help="per sample provider call")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "apps" / "api" / "src"))
    pg_server: URL = make_url(args.pg_url)
    databases, notes = databases_to_measure(args.db, pg_server)
    modes = [("first come, first served", 0), (f"fair share, turns of {args.turn}", args.turn)]
    table: list[list[str]] = []
    for db in databases:
        for mode, turn in modes:
            with tempfile.TemporaryDirectory(prefix="bench-fair-") as tmp:
                if db == "sqlite":
                    url = f"sqlite+aiosqlite:///{tmp}/bench.db"
                    results, cpu = measure(db, url, Path(tmp), args, turn)
                else:
                    with postgres_database(pg_server, "bench_fair") as url:
                        results, cpu = measure(db, url, Path(tmp), args, turn)
            for result in results:
                table.append(
                    [
                        db,
                        mode,
                        result.name,
                        f"{result.needed:,}",
                        f"{result.took:,}",
                        f"{100 * result.took / args.budget:.1f} %",
                        f"{result.fair:,}",
                        f"{result.took - result.fair:+,}",
                        f"{result.finished_after:.2f} s"
                        + ("" if result.completed else " (rest tomorrow)"),
                        f"{1000 * cpu:.2f}",
                    ]
                )
    columns = [
        "db",
        "mode",
        "org",
        "needed",
        "took",
        "share",
        "fair",
        "off fair",
        "done after",
        "CPU ms/call",
    ]
    print(format_table(columns, table, text_columns=3))
    print(
        f"Budget {args.budget:,} calls; org A needs {args.big * args.products:,} and starts "
        f"first, the others ({args.small * args.products:,} each) once it has "
        f"{args.head_start:,}; sample latency {args.latency_ms} ms; load average "
        f"{' '.join(f'{load:.2f}' for load in os.getloadavg())}."
    )
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
