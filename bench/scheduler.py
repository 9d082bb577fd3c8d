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
import json
import logging
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from benchlib import (
    BENCH_SECRET,
    DEFAULT_PG_URL,
    bench_settings,
    child_environment,
    cpu_seconds,
    current_rss_kib,
    databases_to_measure,
    format_table,
    percentile,
    postgres_database,
)
from sqlalchemy.engine import URL, make_url

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "apps" / "api" / "src"  # the code measured: this checkout's, in every process
POLL_SECONDS = 2.0  # SCHEDULER_POLL_SECONDS of our replicas (the default)
SEED_CHUNK = 5000  # schedules per seeding transaction
SCENARIOS = ("startup", "burst", "lone", "jitter")


def app_environment(**values: str) -> dict[str, str]:
    """A child's clean environment that imports `app` from this checkout (a worktree's
    code, not whatever the virtualenv's editable install points at), plus `values`."""
    return {**child_environment(), "PYTHONPATH": str(SOURCE), **values}


def check_measured_code() -> None:
    """Refuse to measure when this process imports `app` from another checkout: it seeds
    and reads the database with that code's tables while the replicas run this one's."""
    import app

    imported = Path(app.__file__).resolve().parent
    if not imported.is_relative_to(SOURCE.resolve()):
        raise SystemExit(
            f"bench/scheduler.py imports app from {imported}, not from this checkout; "
            f"run it with PYTHONPATH={SOURCE}"
        )


# --- our side: seeding and real server processes ----------------------------------------------


def migrate(database_url: str, data_dir: Path) -> None:
    from app.migrate import upgrade

    upgrade(bench_settings(database_url, data_dir))


def schedule_name(index: int) -> str:
    return "Default" if index == 0 else f"Schedule {index + 1}"


async def seed(
    database_url: str,
    data_dir: Path,
    count: int,
    per_org: int,
    next_run_at: datetime,
    jitter_seconds: int = 0,
) -> int:
    """`count` enabled schedules, `per_org` to an organization (the last one may have
    fewer); return the number of organizations.

    Rows as the app makes them: each organization has a one-category preset that all its
    schedules collect, and its first schedule is its one default ("Default", the others
    "Schedule 2", "Schedule 3"...); the migrations' constraints (one default per
    organization, the jitter's range) check them.
    """
    from app.core.database import Database
    from app.tables import CategoryPreset, CollectionSchedule, Organization

    database = Database.from_settings(bench_settings(database_url, data_dir))
    now = datetime.now(UTC)
    org_count = -(-count // per_org)
    orgs_per_chunk = max(1, SEED_CHUNK // per_org)
    try:
        for first_org in range(0, org_count, orgs_per_chunk):
            numbers = range(first_org, min(org_count, first_org + orgs_per_chunk))
            orgs = {n: (uuid.uuid4(), uuid.uuid4()) for n in numbers}  # org id, preset id
            async with database.transaction() as session:
                await session.execute(
                    sa.insert(Organization),
                    [{"id": org, "name": f"Org {n}"} for n, (org, _) in orgs.items()],
                )
                await session.execute(
                    sa.insert(CategoryPreset),
                    [
                        {
                            "id": preset,
                            "org_id": org,
                            "name": "Electronics",
                            "name_key": "electronics",  # the ORM's validator sets it
                            "category_ids": ["172282"],
                        }
                        for org, preset in orgs.values()
                    ],
                )
                await session.execute(
                    sa.insert(CollectionSchedule),
                    [
                        {
                            "org_id": org,
                            "preset_id": preset,
                            "name": schedule_name(i),
                            "is_default": i == 0,
                            "enabled": True,
                            "jitter_seconds": jitter_seconds,
                            "next_run_at": next_run_at,
                            "created_at": now + timedelta(microseconds=i),
                        }
                        for n, (org, preset) in orgs.items()
                        for i in range(min(per_org, count - n * per_org))
                    ],
                )
    finally:
        await database.dispose()
    return org_count


async def set_due(
    database_url: str,
    data_dir: Path,
    first: datetime,
    spacing: timedelta = timedelta(0),
) -> dict[uuid.UUID, datetime]:
    """Give every schedule the cron time `first`, or one after the other `spacing` apart;
    each fires its jitter offset later (`next_run_at` = cron time + offset, as the app
    saves it). Return each schedule's cron time."""
    from app.core.database import Database
    from app.scheduling.settings import jitter_offset
    from app.tables import CollectionSchedule

    database = Database.from_settings(bench_settings(database_url, data_dir))
    try:
        async with database.transaction() as session:
            rows = (
                await session.execute(
                    sa.select(CollectionSchedule.id, CollectionSchedule.jitter_seconds)
                )
            ).all()
            cron_times = {row.id: first + n * spacing for n, row in enumerate(rows)}
            if not spacing and not any(row.jitter_seconds for row in rows):
                await session.execute(sa.update(CollectionSchedule).values(next_run_at=first))
                return cron_times
            await session.execute(
                sa.update(CollectionSchedule),
                [
                    {
                        "id": row.id,
                        "next_run_at": cron_times[row.id]
                        + jitter_offset(row.id, row.jitter_seconds),
                    }
                    for row in rows
                ],
            )
            return cron_times
    finally:
        await database.dispose()


async def fire_stats(database_url: str, data_dir: Path) -> dict[str, Any]:
    """What the fire log and the runs table say after a scenario.

    Per fire: `total` = fired_at - scheduled_for (scheduled_for is the cron time),
    `offsets` = the schedule's jitter offset, `engine` = total - offset (the engine's own
    delay past the fire time).
    """
    from app.core.database import Database
    from app.scheduling.settings import jitter_offset
    from app.tables import CollectionRun, CollectionSchedule, RunTrigger, ScheduleFire

    database = Database.from_settings(bench_settings(database_url, data_dir))
    try:
        async with database.read() as session:
            fires = (
                await session.execute(
                    sa.select(
                        ScheduleFire.schedule_id,
                        ScheduleFire.scheduled_for,
                        ScheduleFire.fired_at,
                        ScheduleFire.instance_id,
                        ScheduleFire.outcome,
                        CollectionSchedule.jitter_seconds,
                    ).join(CollectionSchedule, CollectionSchedule.id == ScheduleFire.schedule_id)
                )
            ).all()
            runs = int(
                await session.scalar(
                    sa.select(sa.func.count())
                    .select_from(CollectionRun)
                    .where(CollectionRun.trigger == RunTrigger.SCHEDULE)
                )
                or 0
            )
            schedules = int(
                await session.scalar(sa.select(sa.func.count()).select_from(CollectionSchedule))
                or 0
            )
    finally:
        await database.dispose()
    per_instance: dict[str, int] = {}
    outcomes: dict[str, int] = {}
    for fire in fires:
        per_instance[fire.instance_id] = per_instance.get(fire.instance_id, 0) + 1
        outcome = fire.outcome.value if fire.outcome else "unset"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    keys = {(f.schedule_id, f.scheduled_for) for f in fires}
    total = [(_aware(f.fired_at) - _aware(f.scheduled_for)).total_seconds() for f in fires]
    offsets = [jitter_offset(f.schedule_id, f.jitter_seconds).total_seconds() for f in fires]
    return {
        "fires": len(fires),
        "runs": runs,
        "duplicates": len(fires) - len(keys),
        "misses": schedules - len({f.schedule_id for f in fires}),
        "per_instance": per_instance,
        "outcomes": outcomes,
        "total": total,
        "offsets": offsets,
        "engine": [t - o for t, o in zip(total, offsets, strict=True)],
        "cron_times": {f.schedule_id: _aware(f.scheduled_for) for f in fires},
        "last_fired_at": max((_aware(f.fired_at) for f in fires), default=None),
    }


async def count_fires_and_runs(database_url: str, data_dir: Path) -> tuple[int, int]:
    from app.core.database import Database
    from app.tables import CollectionRun, RunTrigger, ScheduleFire

    database = Database.from_settings(bench_settings(database_url, data_dir))
    try:
        async with database.read() as session:
            fires = await session.scalar(sa.select(sa.func.count()).select_from(ScheduleFire))
            runs = await session.scalar(
                sa.select(sa.func.count())
                .select_from(CollectionRun)
                .where(CollectionRun.trigger == RunTrigger.SCHEDULE)
            )
            return int(fires or 0), int(runs or 0)
    finally:
        await database.dispose()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Replica:
    """`collection-api serve` (this checkout's) with the scheduler on, its log in a file.

    `environment` adds settings (e.g. the sample providers' latency).
    """

    def __init__(
        self, database_url: str, data_dir: Path, name: str, environment: dict[str, str]
    ) -> None:
        from socket import socket

        with socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir / f"{name}.log"
        env = app_environment(
            DATABASE_URL=database_url,
            DATA_DIR=str(data_dir),
            JWT_SECRET=BENCH_SECRET,
            INSTANCE_ID=name,
            SCHEDULER_POLL_SECONDS=str(POLL_SECONDS),
            LOG_LEVEL="WARNING",
            **environment,
        )
        self.started = time.perf_counter()
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=log,
            )

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Seconds from spawning the process until /ready answered 200."""
        deadline = self.started + timeout
        with httpx.Client(timeout=1.0) as client:
            while time.perf_counter() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"replica exited; see {self.log}")
                try:
                    if client.get(f"{self.url}/ready").status_code == 200:
                        return time.perf_counter() - self.started
                except httpx.TransportError:
                    pass
                time.sleep(0.01)
        raise TimeoutError(f"replica not ready after {timeout}s; see {self.log}")

    def rss_kib(self) -> int:
        return current_rss_kib(self.process.pid)

    def cpu_seconds(self) -> float | None:
        """CPU time the process has used so far; None where /proc cannot tell."""
        try:
            return cpu_seconds(self.process.pid)
        except (OSError, IndexError, ValueError):
            return None

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextmanager
def replicas(
    database_url: str, data_dir: Path, count: int, **environment: str
) -> Iterator[list[Replica]]:
    started = [Replica(database_url, data_dir, f"replica-{i}", environment) for i in range(count)]
    try:
        yield started
    finally:
        for replica in started:
            replica.stop()


@contextmanager
def fresh_database(db: str, pg_server: URL) -> Iterator[tuple[str, Path]]:
    with tempfile.TemporaryDirectory(prefix="bench-scheduler-") as tmp:
        data_dir = Path(tmp)
        if db == "sqlite":
            url = f"sqlite+aiosqlite:///{data_dir / 'collection.db'}"
            migrate(url, data_dir)
            yield url, data_dir
            return
        with postgres_database(pg_server, "bench_scheduler") as url:
            migrate(url, data_dir)
            yield url, data_dir


def far_future() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(days=40)


def at_whole_second(seconds_from_now: float) -> datetime:
    moment = datetime.now(UTC) + timedelta(seconds=seconds_from_now)
    return moment.replace(microsecond=0) + timedelta(seconds=1)


def wait_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


# --- the peer: one APScheduler cron job per schedule, in memory ------------------------------


def peer_child(args: argparse.Namespace) -> None:
    """One peer measurement in this (fresh) process; prints one JSON line."""
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    result = asyncio.run(PEER_SCENARIOS[args.peer](args))
    print(json.dumps(result), flush=True)


async def peer_startup(args: argparse.Namespace) -> dict[str, Any]:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from apscheduler.triggers.cron import CronTrigger

    async def collect() -> None:  # never called: every job is due next month
        return None

    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.start()
    rss_before = current_rss_kib()
    started = time.perf_counter()
    for i in range(args.count):
        scheduler.add_job(
            collect,
            CronTrigger.from_crontab("0 0 1 * *", timezone=UTC),
            id=f"schedule-{i}",
        )
    seconds = time.perf_counter() - started
    rss_after = current_rss_kib()
    scheduler.shutdown(wait=False)
    return {"seconds": seconds, "rss_delta_kib": rss_after - rss_before}


async def peer_burst(args: argparse.Namespace) -> dict[str, Any]:
    """One cron job per seeded schedule, all due at one instant, each creating its
    organization's run as the app would (a second active run of an organization is
    refused: that fire is skipped)."""
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED
    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from apscheduler.triggers.cron import CronTrigger

    from app.core.database import Database
    from app.runs.lifecycle import RunLifecycle, RunSpec
    from app.tables import CollectionSchedule, RunTrigger

    settings = bench_settings(args.database_url, Path(args.data_dir))
    database = Database.from_settings(settings)
    collection = RunLifecycle(settings)
    async with database.read() as session:
        schedules = (
            await session.execute(sa.select(CollectionSchedule.id, CollectionSchedule.org_id))
        ).all()
    finished: list[float] = []
    started: list[uuid.UUID] = []
    missed: list[str] = []
    failed: list[str] = []
    settled = asyncio.Event()  # every job ran, missed or failed

    def note(outcomes: list[Any], outcome: Any) -> None:
        outcomes.append(outcome)
        if len(finished) + len(missed) + len(failed) == len(schedules):
            settled.set()

    async def collect(schedule_id: uuid.UUID, org_id: uuid.UUID) -> None:
        async with database.transaction() as session:
            (run_id,) = await collection.create_runs(
                session,
                [
                    RunSpec(
                        org_id=org_id,
                        name="scheduled",
                        category_ids=["172282"],
                        created_by=None,
                        trigger=RunTrigger.SCHEDULE,
                        schedule_id=schedule_id,
                        start=True,
                    )
                ],
            )
        if run_id is not None:
            started.append(run_id)
        note(finished, time.time())

    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.add_listener(lambda event: note(missed, event.job_id), EVENT_JOB_MISSED)
    scheduler.add_listener(lambda event: note(failed, event.job_id), EVENT_JOB_ERROR)
    scheduler.start()
    due = at_whole_second(3 + len(schedules) / 5000)
    trigger = CronTrigger(hour=due.hour, minute=due.minute, second=due.second, timezone=UTC)
    grace = None if args.grace == "none" else int(args.grace)
    for schedule_id, org_id in schedules:
        scheduler.add_job(
            collect,
            trigger,
            args=[schedule_id, org_id],
            id=str(schedule_id),
            misfire_grace_time=grace,
        )
    cpu_before = time.process_time()  # waiting for the due time costs next to nothing
    due_ts = due.timestamp()
    with suppress(TimeoutError):
        await asyncio.wait_for(settled.wait(), timeout=due_ts + args.timeout - time.time())
    cpu = time.process_time() - cpu_before
    scheduler.shutdown(wait=False)
    await database.dispose()
    return {
        "jobs": len(schedules),
        "ran": len(finished),
        "runs": len(started),
        "skipped": len(finished) - len(started),
        "missed": len(missed),
        "failed": len(failed),
        "seconds": (max(finished) - due_ts) if finished else None,
        "cpu_seconds": cpu,
    }


async def peer_lone(args: argparse.Namespace) -> dict[str, Any]:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from apscheduler.triggers.date import DateTrigger

    delays: list[float] = []
    done = asyncio.Event()

    async def collect(due: float) -> None:
        delays.append(time.time() - due)
        if len(delays) == args.count:
            done.set()

    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.start()
    first = at_whole_second(1)
    for i in range(args.count):
        due = first + timedelta(seconds=i * args.spacing)
        scheduler.add_job(collect, DateTrigger(run_date=due), args=[due.timestamp()])
    await done.wait()
    scheduler.shutdown(wait=False)
    return {"delays": delays}


PEER_SCENARIOS = {"startup": peer_startup, "burst": peer_burst, "lone": peer_lone}


def run_peer(scenario: str, budget: float, **options: Any) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--peer", scenario]
    for name, value in options.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    completed = subprocess.run(
        command,
        stdout=subprocess.PIPE,
        text=True,
        env=app_environment(),
        timeout=budget + 120,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"peer {scenario} failed (exit {completed.returncode})")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


# --- scenarios -----------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    db: str
    figure: str
    ours: str
    peer: str
    goal: str
    notes: list[str] = field(default_factory=list)
    jitter: list[str] | None = None
    """The cells of this row in the jitter table (the jitter scenario only)."""


def mib(kib: float) -> str:
    return f"{round(kib / 1024, 1) or 0.0:.1f} MiB"  # `or`: no "-0.0" for a tiny decrease


def ms(values: Sequence[float], *fractions: float) -> str:
    """Percentiles of `values` (seconds) in milliseconds: "p50 / p99 / ... ms"."""
    return " / ".join(f"{percentile(values, q) * 1000:,.0f}" for q in fractions) + " ms"


def spread(args: argparse.Namespace, schedules: int, orgs: int) -> str:
    return f"{schedules:,} schedules in {orgs:,} organizations ({args.per_org} per organization)"


def start_once(database_url: str, data_dir: Path) -> tuple[float, int]:
    """Start one replica: seconds to ready, and its RSS once the first poll has passed."""
    with replicas(database_url, data_dir, 1) as (replica,):
        ready = replica.wait_ready()
        time.sleep(POLL_SECONDS + 0.5)
        return ready, replica.rss_kib()


def scenario_startup(db: str, pg_server: URL, args: argparse.Namespace) -> list[Row]:
    with fresh_database(db, pg_server) as (url, data_dir):
        empty = [start_once(url, data_dir) for _ in range(args.repeat)]
        seeded = time.perf_counter()
        orgs = asyncio.run(seed(url, data_dir, args.schedules, args.per_org, far_future()))
        seed_seconds = time.perf_counter() - seeded
        full = [start_once(url, data_dir) for _ in range(args.repeat)]
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
            [f"seeding {spread(args, args.schedules, orgs)} took {seed_seconds:.1f} s"],
        ),
        Row(
            "startup",
            db,
            f"{n} schedules: RSS above empty",
            f"{mib(rss_full - rss_empty)} ({mib(rss_full)} total)",
            mib(peer["rss_delta_kib"]),
            "< 50 MiB",
        ),
    ]


# The runs a burst starts wait this long in their first provider call, so that they stay
# active (an organization's later fires are skipped, as in production where a run takes
# minutes) and spend no CPU next to the fires, as the peer's runs, which nobody executes.
BURST_PROVIDER_LATENCY_MS = "60000"


def scenario_burst(db: str, pg_server: URL, args: argparse.Namespace) -> list[Row]:
    count = args.replicas if db == "postgresql" else 1
    with fresh_database(db, pg_server) as (url, data_dir):
        orgs = asyncio.run(seed(url, data_dir, args.burst, args.per_org, far_future()))
        with replicas(
            url, data_dir, count, SAMPLE_PROVIDER_LATENCY_MS=BURST_PROVIDER_LATENCY_MS
        ) as started:
            for replica in started:
                replica.wait_ready()
            due = at_whole_second(2 * POLL_SECONDS + 1)
            asyncio.run(set_due(url, data_dir, due))
            wait_until(due)
            cpu_before = [replica.cpu_seconds() for replica in started]
            seen: float | None = None
            deadline = time.time() + args.timeout
            while time.time() < deadline:
                fires, _ = asyncio.run(count_fires_and_runs(url, data_dir))
                if fires >= args.burst:  # a fire commits with its run (or its skip)
                    seen = time.time() - due.timestamp()
                    break
                time.sleep(0.1)
            cpu_after = [replica.cpu_seconds() for replica in started]
            time.sleep(POLL_SECONDS + 0.5)  # a few more polls: nothing may fire twice
        stats = asyncio.run(fire_stats(url, data_dir))
    peers = {}
    for grace in ("1", "none"):  # APScheduler's default misfire_grace_time, and no limit
        with fresh_database(db, pg_server) as (url, data_dir):
            asyncio.run(seed(url, data_dir, args.burst, args.per_org, far_future()))
            peers[grace] = run_peer(
                "burst",
                args.timeout,
                database_url=url,
                data_dir=data_dir,
                timeout=args.timeout,
                grace=grace,
            )
    last = (stats["last_fired_at"] - due).total_seconds() if stats["last_fired_at"] else None
    goal = "< 15 s" if db == "postgresql" else "< 30 s"
    read = [
        (b, a)
        for b, a in zip(cpu_before, cpu_after, strict=True)
        if b is not None and a is not None
    ]
    cpu = sum(a - b for b, a in read) if len(read) == count else None  # None: no /proc

    def peer_time(peer: dict[str, Any]) -> str:
        if peer["ran"] < args.burst:
            return f"never ({peer['ran']:,} jobs ran)"
        return f"{peer['seconds']:.2f} s"

    def peer_cpu(peer: dict[str, Any]) -> str:
        if not peer["ran"]:
            return "n/a"
        per_fire = peer["cpu_seconds"] / peer["ran"] * 1000
        return f"{per_fire:.2f} ms ({peer['cpu_seconds']:.2f} s CPU)"

    peer, unlimited = peers["1"], peers["none"]
    n = f"{args.burst:,}"
    outcomes = stats["outcomes"]
    plural = "s" if count > 1 else ""
    return [
        Row(
            "burst",
            db,
            f"{n} due at once: all fires committed",
            f"{seen:.2f} s ({count} replica{plural})"
            if seen is not None
            else f"not within {args.timeout:.0f} s",
            f"grace 1 s: {peer_time(peer)}; no grace limit: {peer_time(unlimited)}",
            goal,
            [
                spread(args, args.burst, orgs),
                f"latest fire decision {last:.2f} s after due" if last is not None else "",
                "fires per replica: "
                + ", ".join(f"{k}={v}" for k, v in sorted(stats["per_instance"].items())),
                "outcomes: " + ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items())),
                *(
                    f"peer (misfire grace {grace}): {p['ran']} jobs ran ({p['runs']} runs "
                    f"created, {p['skipped']} refused), {p['missed']} dropped as misfired, "
                    f"{p['failed']} failed"
                    for grace, p in peers.items()
                ),
            ],
        ),
        Row(
            "burst",
            db,
            f"{n} due at once: fires / runs started / skipped",
            f"{stats['fires']:,} / {outcomes.get('started', 0):,} / "
            f"{outcomes.get('skipped', 0):,} (runs: {stats['runs']:,})",
            f"no grace limit: {unlimited['ran']:,} / {unlimited['runs']:,} / "
            f"{unlimited['skipped']:,}",
            f"{n} / {orgs:,} / {args.burst - orgs:,}",
        ),
        Row(
            "burst",
            db,
            f"{n} due at once: duplicates / misses",
            f"{stats['duplicates']} / {stats['misses']}",
            f"n/a / {peer['missed']:,} (grace 1 s); n/a / {unlimited['missed']} (no limit)",
            "0 / 0",
        ),
        Row(
            "burst",
            db,
            f"{n} due at once: CPU per fire (all replicas)",
            f"{cpu / stats['fires'] * 1000:.2f} ms ({cpu:.2f} s CPU in {seen:.2f} s wall)"
            if cpu is not None and seen is not None and stats["fires"]
            else "n/a",
            f"no grace limit: {peer_cpu(unlimited)}",
            "—",
        ),
    ]


def fire_one_by_one(
    db: str, pg_server: URL, args: argparse.Namespace, jitter_seconds: int
) -> tuple[dict[str, Any], dict[uuid.UUID, datetime]]:
    """`--lone-samples` schedules with cron times `--lone-spacing` apart (each firing its
    jitter offset later) on one replica; the fire log's figures and the cron times set."""
    with fresh_database(db, pg_server) as (url, data_dir):
        asyncio.run(
            seed(url, data_dir, args.lone_samples, args.per_org, far_future(), jitter_seconds)
        )
        with replicas(url, data_dir, 1) as (replica,):
            replica.wait_ready()
            first = at_whole_second(2 * POLL_SECONDS + 1)
            spacing = timedelta(seconds=args.lone_spacing)
            cron_times = asyncio.run(set_due(url, data_dir, first, spacing))
            wait_until(first + args.lone_samples * spacing + timedelta(seconds=jitter_seconds))
            deadline = time.time() + 30
            while time.time() < deadline:
                if asyncio.run(count_fires_and_runs(url, data_dir))[0] >= args.lone_samples:
                    break
                time.sleep(0.1)
        return asyncio.run(fire_stats(url, data_dir)), cron_times


def scenario_lone(db: str, pg_server: URL, args: argparse.Namespace) -> list[Row]:
    stats, _ = fire_one_by_one(db, pg_server, args, 0)
    peer = run_peer("lone", 60, count=args.lone_samples, spacing=args.lone_spacing)
    ours, theirs = stats["total"], peer["delays"]
    orgs = -(-args.lone_samples // args.per_org)
    return [
        Row(
            "lone",
            db,
            f"fire delay p50 / p99 / max ({len(ours)} fires, no jitter)",
            ms(ours, 0.5, 0.99, 1.0),
            ms(theirs, 0.5, 0.99, 1.0),
            "p99 < 1 s",
            [
                spread(args, args.lone_samples, orgs),
                "outcomes: " + ", ".join(f"{k}={v}" for k, v in sorted(stats["outcomes"].items())),
                f"{stats['misses']} of {args.lone_samples} schedules did not fire"
                if stats["misses"]
                else "",
            ],
        )
    ]


def scenario_jitter(db: str, pg_server: URL, args: argparse.Namespace) -> list[Row]:
    stats, cron_times = fire_one_by_one(db, pg_server, args, args.jitter_seconds)
    total, offsets, engine = stats["total"], stats["offsets"], stats["engine"]
    orgs = -(-args.lone_samples // args.per_org)
    wrong = sum(1 for i, t in stats["cron_times"].items() if cron_times.get(i) != t)
    return [
        Row(
            "jitter",
            db,
            f"engine's delay p50 / p99 / max ({len(engine)} fires, jitter "
            f"< {args.jitter_seconds} s)",
            ms(engine, 0.5, 0.99, 1.0),
            "— (see lone)",
            "p99 < 1 s",
            [
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
                ms(engine, 1.0),
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
)
JITTER_COLUMNS = (
    "db",
    "fires",
    "jitter_seconds",
    "total delay p50 / p99",
    "jitter offset p50 / p99",
    "engine's delay p50 / p99",
    "engine's max",
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
            [[r.scenario, r.db, r.figure, r.ours, r.peer, r.goal] for r in rows],
            text_columns=6,
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
    parser.add_argument("--lone-samples", type=int, default=40, help="lone, jitter: fires measured")
    parser.add_argument(
        "--lone-spacing", type=float, default=0.5, help="lone, jitter: seconds apart"
    )
    parser.add_argument(
        "--jitter-seconds", type=int, default=10, help="jitter: the schedules' jitter_seconds"
    )
    # a peer measurement in a fresh process (internal)
    parser.add_argument("--peer", choices=sorted(PEER_SCENARIOS), help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--spacing", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--grace", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
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
    args = parse_args()
    if args.peer:
        peer_child(args)
        return 0
    return parent_main(args)


if __name__ == "__main__":
    sys.exit(main())
