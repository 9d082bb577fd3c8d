"""The scheduler benchmark's peer: the straightforward design, one APScheduler 3 cron job
per schedule in a `MemoryJobStore`. Each measurement runs in a fresh process (`run_peer`
starts this script), so that nothing of the parent's memory or event loop counts."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import subprocess
import sys
import time
import uuid
from contextlib import suppress
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from benchlib import bench_settings, current_rss_kib
from scheduler_ours import app_environment, at_whole_second


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


def main() -> None:
    parser = argparse.ArgumentParser(description="one peer measurement (bench/scheduler.py)")
    parser.add_argument("--peer", choices=sorted(PEER_SCENARIOS), required=True)
    parser.add_argument("--count", type=int)
    parser.add_argument("--spacing", type=float)
    parser.add_argument("--grace")
    parser.add_argument("--timeout", type=float)
    parser.add_argument("--database-url")
    parser.add_argument("--data-dir")
    peer_child(parser.parse_args())


if __name__ == "__main__":
    main()
