"""The scheduler benchmark's side of ours: seeding schedules as the app makes them, real
`collection-api serve` replicas running this checkout's code, reading the fire log (and
watching it for commits), and the rows the scenarios report."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from benchlib import (
    BENCH_SECRET,
    ChildProcess,
    bench_settings,
    child_environment,
    current_rss_kib,
    percentile,
    postgres_database,
)
from sqlalchemy.engine import URL

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "apps" / "api" / "src"  # the code measured: this checkout's, in every process
POLL_SECONDS = 2.0  # SCHEDULER_POLL_SECONDS of our replicas (the default)
SEED_CHUNK = 5000  # schedules per seeding transaction


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


class FireLogReader:
    """Reads a database's fire log from this synchronous process, again and again, over one
    connection pool (opening an engine per poll would cost more than the poll). Use it
    from one thread."""

    def __init__(self, database_url: str, data_dir: Path) -> None:
        from app.core.database import Database

        self._runner = asyncio.Runner()
        self._database = Database.from_settings(bench_settings(database_url, data_dir))

    def count(self) -> int:
        """Fires committed so far (a fire commits with its run, or its skip)."""
        return self._runner.run(self._count())

    def fired(self) -> list[uuid.UUID]:
        """The schedules with a fire committed so far."""
        return self._runner.run(self._fired())

    async def _count(self) -> int:
        from app.tables import ScheduleFire

        async with self._database.read() as session:
            return int(
                await session.scalar(sa.select(sa.func.count()).select_from(ScheduleFire)) or 0
            )

    async def _fired(self) -> list[uuid.UUID]:
        from app.tables import ScheduleFire

        async with self._database.read() as session:
            return list(await session.scalars(sa.select(ScheduleFire.schedule_id)))

    def close(self) -> None:
        self._runner.run(self._database.dispose())
        self._runner.close()


@contextmanager
def fire_log_reader(database_url: str, data_dir: Path) -> Iterator[FireLogReader]:
    reader = FireLogReader(database_url, data_dir)
    try:
        yield reader
    finally:
        reader.close()


async def probe_token(database_url: str, data_dir: Path) -> str:
    """A token of an organization's admin (a new organization, without schedules): what the
    API probe reads the schedule page with."""
    from app.auth import issue_token
    from app.core.database import Database
    from app.users import bootstrap_admin

    settings = bench_settings(database_url, data_dir)
    database = Database.from_settings(settings)
    email = "probe@bench.example"
    try:
        async with database.transaction() as session:
            _, user_id = await bootstrap_admin(session, org_name="API probe", email=email)
    finally:
        await database.dispose()
    return issue_token(settings, user_id=user_id, email=email, ttl_seconds=3600)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Replica(ChildProcess):
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


class CommitWatcher:
    """Polls the fire log every `interval` seconds from a thread of its own and notes when
    each schedule's fire was first seen: the moment its transaction was committed, within
    the interval."""

    def __init__(self, database_url: str, data_dir: Path, interval: float = 0.01) -> None:
        self.database_url = database_url
        self.data_dir = data_dir
        self.interval = interval
        self.seen: dict[uuid.UUID, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch)

    def __enter__(self) -> CommitWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        with fire_log_reader(self.database_url, self.data_dir) as reader:
            while not self._stop.is_set():
                fired = reader.fired()
                now = time.time()
                for schedule_id in fired:
                    self.seen.setdefault(schedule_id, now)
                self._stop.wait(self.interval)


# --- the rows the scenarios report ---------------------------------------------------------


@dataclass
class Row:
    scenario: str
    db: str
    figure: str
    ours: str
    peer: str
    goal: str
    load: str
    """The 1-minute load average when the measurement began → when it ended."""
    notes: list[str] = field(default_factory=list)
    jitter: list[str] | None = None
    """The cells of this row in the jitter table (the jitter scenario only)."""


def mib(kib: float) -> str:
    return f"{round(kib / 1024, 1) or 0.0:.1f} MiB"  # `or`: no "-0.0" for a tiny decrease


def ms(values: Sequence[float], *fractions: float) -> str:
    """Percentiles of `values` (seconds) in milliseconds: "p50 / p99 / ... ms"."""
    return " / ".join(f"{percentile(values, q) * 1000:,.0f}" for q in fractions) + " ms"


def load_average() -> float:
    """The machine's 1-minute load average (other sessions share it)."""
    return os.getloadavg()[0]


def spread(args: argparse.Namespace, schedules: int, orgs: int) -> str:
    return f"{schedules:,} schedules in {orgs:,} organizations ({args.per_org} per organization)"
