"""Benchmark: the schedule engine at scale, next to the straightforward design, in one run.

Our design keeps every schedule in the database (`next_run_at`) and one APScheduler job
per instance that wakes at the earliest due time. The peer is the straightforward design
the issue names: one APScheduler 3 cron job per schedule in a `MemoryJobStore`.

Every scenario seeds its schedules `--per-org` to an organization (default 10): one of
them the organization's default, each with its own name and the organization's preset.
Each runs on a fresh database; our side is always real `collection-api serve` processes
running this checkout's code.

startup
    N enabled schedules (default 100,000). Ours: time from spawning `serve` until
    `/ready` answers 200 (median of `--repeat` starts), and the resident memory of the
    process a poll interval later, against the same measurement on an empty database.
    Peer: the time to add N cron jobs to a started `AsyncIOScheduler` and the memory it
    grows by (it has not even read the schedules from a database yet).
burst
    B schedules (default 10,000) with the default `0 0 1 * *`, all due at one instant T.
    An organization has one active run at most, so of its `--per-org` fires one starts a
    run and the others are skipped (overlap policy `skip`). Ours: `--replicas` processes
    on PostgreSQL (one on SQLite) fire them; the bench polls the database every 100 ms and
    reports when every fire is committed (T → all visible; a fire and its run commit
    together), the CPU time the replicas used meanwhile, fires, runs started and fires
    skipped, fires per replica, duplicates and misses. The runs' sample providers wait
    60 s per call, so the runs stay active and spend no CPU during the burst.
    Peer: one process (a MemoryJobStore cannot be shared) with the same B cron jobs due
    at T, each creating its organization's run in its own transaction with the app's
    `RunLifecycle.create_runs` (which refuses a second active run), with APScheduler's
    default `misfire_grace_time` (1 s) and without a limit; jobs it drops as misfired are
    misses.
lone
    K schedules due one at a time, `--lone-spacing` apart, without jitter. Ours: fire
    delay = the due time until the replica decided the fire and wrote the run (`fired_at`
    of the fire log). Peer: the due time until the job's function starts (DateTrigger jobs).
jitter
    The same K schedules with `--jitter-seconds` of jitter: each fires a fixed offset
    (`jitter_offset` of its id) after its cron time. Reported per fire, as p50 / p99: the
    total delay after the cron time (`fired_at - scheduled_for`), the jitter offset, and
    the engine's own delay (total - offset, what `schedule_fire_delay_seconds` records).

Nothing is asserted: the script prints the tables. Usage (from the repository root)::

    .venv/bin/python bench/scheduler.py
    .venv/bin/python bench/scheduler.py --db sqlite --scenarios lone,jitter
    .venv/bin/python bench/scheduler.py --schedules 20000 --burst 2000 --per-org 5 --help
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchlib import DEFAULT_PG_URL, databases_to_measure, format_table
from scheduler_burst import scenario_burst
from scheduler_ours import (
    POLL_SECONDS,
    CommitWatcher,
    Row,
    at_whole_second,
    check_measured_code,
    far_future,
    fire_stats,
    fresh_database,
    load_average,
    mib,
    ms,
    replicas,
    seed,
    set_due,
    spread,
    wait_until,
)
from scheduler_peer import run_peer
from sqlalchemy.engine import URL, make_url

SCENARIOS = ("startup", "burst", "lone", "jitter")

# --- scenarios -----------------------------------------------------------------------------


def start_once(database_url: str, data_dir: Path) -> tuple[float, int]:
    """Start one replica: seconds to ready, and its RSS once the first poll has passed."""
    with replicas(database_url, data_dir, 1) as (replica,):
        ready = replica.wait_ready()
        time.sleep(POLL_SECONDS + 0.5)
        return ready, replica.rss_kib()


def scenario_startup(db: str, pg_server: URL, args: argparse.Namespace) -> list[Row]:
    load_before = load_average()
    with fresh_database(db, pg_server) as (url, data_dir):
        empty = [start_once(url, data_dir) for _ in range(args.repeat)]
        seeded = time.perf_counter()
        orgs = asyncio.run(seed(url, data_dir, args.schedules, args.per_org, far_future()))
        seed_seconds = time.perf_counter() - seeded
        full = [start_once(url, data_dir) for _ in range(args.repeat)]
    load = f"{load_before:.1f} → {load_average():.1f}"
    peer = run_peer("startup", 300, count=args.schedules)
    ready_empty = statistics.median(seconds for seconds, _ in empty)
    ready_full = statistics.median(seconds for seconds, _ in full)
    rss_empty = statistics.median(rss for _, rss in empty)
    rss_full = statistics.median(rss for _, rss in full)
    n = f"{args.schedules:,}"
    return [
        Row(
            "startup",
            db,
            f"{n} schedules: start → ready",
            f"{ready_full:.2f} s (empty: {ready_empty:.2f} s)",
            f"{peer['seconds']:.2f} s to add the jobs",
            "< 2 s",
            load,
            [f"seeding {spread(args, args.schedules, orgs)} took {seed_seconds:.1f} s"],
        ),
        Row(
            "startup",
            db,
            f"{n} schedules: RSS above empty",
            f"{mib(rss_full - rss_empty)} ({mib(rss_full)} total)",
            mib(peer["rss_delta_kib"]),
            "< 50 MiB",
            load,
        ),
    ]


@dataclass
class OneByOne:
    """What firing schedules one at a time gave: the fire log's figures (`fire_stats`), the
    cron times set, each fire's delay from its fire time until it was seen committed, and
    the load average over the measurement."""

    stats: dict[str, Any]
    cron_times: dict[uuid.UUID, datetime]
    committed: list[float]
    load: str


def fire_one_by_one(
    db: str, pg_server: URL, args: argparse.Namespace, jitter_seconds: int
) -> OneByOne:
    """`--lone-samples` schedules with cron times `--lone-spacing` apart (each firing its
    jitter offset later) on one replica."""
    from app.scheduling.settings import jitter_offset

    with fresh_database(db, pg_server) as (url, data_dir):
        asyncio.run(
            seed(url, data_dir, args.lone_samples, args.per_org, far_future(), jitter_seconds)
        )
        with replicas(url, data_dir, 1) as (replica,), CommitWatcher(url, data_dir) as watcher:
            replica.wait_ready()
            first = at_whole_second(2 * POLL_SECONDS + 1)
            spacing = timedelta(seconds=args.lone_spacing)
            cron_times = asyncio.run(set_due(url, data_dir, first, spacing))
            load_before = load_average()
            wait_until(first + args.lone_samples * spacing + timedelta(seconds=jitter_seconds))
            deadline = time.time() + 30
            while time.time() < deadline and len(watcher.seen) < args.lone_samples:
                time.sleep(0.1)
            load = f"{load_before:.1f} → {load_average():.1f}"
        stats = asyncio.run(fire_stats(url, data_dir))
    committed = [
        watcher.seen[schedule_id]
        - (cron_time + jitter_offset(schedule_id, jitter_seconds)).timestamp()
        for schedule_id, cron_time in cron_times.items()
        if schedule_id in watcher.seen
    ]
    return OneByOne(stats, cron_times, committed, load)


def scenario_lone(db: str, pg_server: URL, args: argparse.Namespace) -> list[Row]:
    measured = fire_one_by_one(db, pg_server, args, 0)
    stats, committed = measured.stats, measured.committed
    peer = run_peer("lone", 60, count=args.lone_samples, spacing=args.lone_spacing)
    theirs = peer["delays"]
    orgs = -(-args.lone_samples // args.per_org)
    return [
        Row(
            "lone",
            db,
            f"fire delay p50 / p99 / max ({len(committed)} fires, no jitter): until committed",
            ms(committed, 0.5, 0.99, 1.0),
            ms(theirs, 0.5, 0.99, 1.0),
            "p99 < 100 ms",
            measured.load,
            [
                spread(args, args.lone_samples, orgs),
                "outcomes: " + ", ".join(f"{k}={v}" for k, v in sorted(stats["outcomes"].items())),
                f"until decided (fired_at): {ms(stats['total'], 0.5, 0.99, 1.0)}; until "
                "committed: when a connection polling the fire log every 10 ms first saw it",
                f"{stats['misses']} of {args.lone_samples} schedules did not fire"
                if stats["misses"]
                else "",
            ],
        )
    ]


def scenario_jitter(db: str, pg_server: URL, args: argparse.Namespace) -> list[Row]:
    measured = fire_one_by_one(db, pg_server, args, args.jitter_seconds)
    stats, cron_times = measured.stats, measured.cron_times
    total, offsets, engine = stats["total"], stats["offsets"], stats["engine"]
    orgs = -(-args.lone_samples // args.per_org)
    wrong = sum(1 for i, t in stats["cron_times"].items() if cron_times.get(i) != t)
    return [
        Row(
            "jitter",
            db,
            f"engine's delay p50 / p99 / max ({len(engine)} fires, jitter "
            f"< {args.jitter_seconds} s): until committed",
            ms(measured.committed, 0.5, 0.99, 1.0),
            "— (see lone)",
            "p99 < 100 ms",
            measured.load,
            [
                f"engine's delay until decided (fired_at): {ms(engine, 0.5, 0.99, 1.0)}",
                spread(args, args.lone_samples, orgs),
                "outcomes: " + ", ".join(f"{k}={v}" for k, v in sorted(stats["outcomes"].items())),
                f"{stats['misses']} of {args.lone_samples} schedules did not fire"
                if stats["misses"]
                else "",
                f"scheduled_for is the cron time set in {len(total) - wrong} of {len(total)} fires",
            ],
            jitter=[
                db,
                f"{len(total)}",
                f"{args.jitter_seconds}",
                ms(total, 0.5, 0.99),
                ms(offsets, 0.5, 0.99),
                ms(engine, 0.5, 0.99),
                ms(measured.committed, 0.5, 0.99),
                ms(measured.committed, 1.0),
            ],
        )
    ]


RUNNERS = {
    "startup": scenario_startup,
    "burst": scenario_burst,
    "lone": scenario_lone,
    "jitter": scenario_jitter,
}
COLUMNS = (
    "scenario",
    "db",
    "figure",
    "ours",
    "peer (APScheduler MemoryJobStore)",
    "goal",
    "load avg",
)
JITTER_COLUMNS = (
    "db",
    "fires",
    "jitter_seconds",
    "total delay p50 / p99",
    "jitter offset p50 / p99",
    "engine's delay p50 / p99: decided",
    "committed",
    "committed max",
)


def parent_main(args: argparse.Namespace) -> int:
    check_measured_code()
    pg_server = make_url(args.pg_url)
    databases, notes = databases_to_measure(args.db, pg_server)
    rows: list[Row] = []
    for scenario in args.scenarios:
        for db in databases:
            print(f"… {scenario} on {db}", file=sys.stderr, flush=True)
            rows.extend(RUNNERS[scenario](db, pg_server, args))
    import apscheduler

    print(
        f"{datetime.now(UTC):%Y-%m-%d} · {platform.node()} · {platform.machine()} · "
        f"Python {platform.python_version()} · APScheduler {apscheduler.__version__} · "
        f"poll {POLL_SECONDS:g} s"
    )
    print()
    print(
        format_table(
            COLUMNS,
            [[r.scenario, r.db, r.figure, r.ours, r.peer, r.goal, r.load] for r in rows],
            text_columns=7,
        )
    )
    jitter = [row.jitter for row in rows if row.jitter is not None]
    if jitter:
        print()
        print("Fires with jitter: delay after the cron time = jitter offset + engine's delay")
        print()
        print(format_table(JITTER_COLUMNS, jitter, text_columns=1))
    print()
    for row in rows:
        for note in filter(None, row.notes):
            print(f"- {row.scenario}/{row.db}: {note}")
    for note in notes:
        print(f"- {note}")
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--db", choices=["both", "sqlite", "postgresql"], default="both")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="a PostgreSQL server to use")
    parser.add_argument(
        "--scenarios",
        type=lambda text: [s for s in text.split(",") if s],
        default=list(SCENARIOS),
        help=f"comma-separated, from {','.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--per-org", type=int, default=10, help="schedules per organization, every scenario"
    )
    parser.add_argument("--schedules", type=int, default=100_000, help="startup: schedules")
    parser.add_argument("--repeat", type=int, default=3, help="startup: starts per database")
    parser.add_argument("--burst", type=int, default=10_000, help="burst: schedules due")
    parser.add_argument("--replicas", type=int, default=3, help="burst: replicas on PostgreSQL")
    parser.add_argument("--timeout", type=float, default=120.0, help="burst: give up after")
    parser.add_argument(
        "--bound-batch", type=int, default=1000, help="burst: fires per INSERT of the bound"
    )
    parser.add_argument(
        "--no-peer", action="store_true", help="burst: leave out the peer (slow at 100,000)"
    )
    parser.add_argument(
        "--batch-size", type=int, help="burst: the replicas' SCHEDULER_BATCH_SIZE (default: theirs)"
    )
    parser.add_argument("--lone-samples", type=int, default=40, help="lone, jitter: fires measured")
    parser.add_argument(
        "--lone-spacing", type=float, default=0.5, help="lone, jitter: seconds apart"
    )
    parser.add_argument(
        "--jitter-seconds", type=int, default=10, help="jitter: the schedules' jitter_seconds"
    )
    args = parser.parse_args(argv)
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if args.per_org < 1:
        parser.error("--per-org must be at least 1")
    if not 1 <= args.jitter_seconds <= 3600:
        parser.error("--jitter-seconds must be within 1-3600 (the column's range)")
    return args


def main() -> int:
    return parent_main(parse_args())


if __name__ == "__main__":
    sys.exit(main())
