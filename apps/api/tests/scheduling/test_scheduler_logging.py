"""What the schedule engine writes to the log: one line per fire at INFO (a burst's first
ones, then a count; failed fires always), APScheduler's own lines (one add, run and removal
per wake-up) only at DEBUG."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from apscheduler.events import EVENT_JOB_EXECUTED
from fastapi import FastAPI

from app.core.config import Settings
from app.core.observability import configure_logging
from app.scheduling.engine import LOGGED_FIRES_PER_BATCH, CollectionScheduler
from app.scheduling.schedules import FireResult
from app.tables import FireOutcome
from tests.helpers.scheduling import FakeClock, make_engine

WAKE_UPS = 5


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """`configure_logging` changes process-wide state: put it back after the test."""
    root = logging.getLogger()
    names = ("apscheduler", "httpx", "uvicorn", "uvicorn.error", "uvicorn.access", "alembic")
    saved = root.handlers[:], root.level, {n: logging.getLogger(n).__dict__.copy() for n in names}
    yield
    root.handlers[:], level, loggers = saved
    root.setLevel(level)
    for name, state in loggers.items():
        logging.getLogger(name).__dict__.update(state)
    logging.getLogger().manager._clear_cache()  # cached isEnabledFor answers


async def _idle_wake_ups(engine: CollectionScheduler, count: int) -> None:
    """Let the engine wake up `count` times with nothing due (what an idle hour is made of)."""
    done = asyncio.Queue[None]()
    engine.scheduler.add_listener(lambda _event: done.put_nowait(None), EVENT_JOB_EXECUTED)
    engine.start()  # wakes at once
    try:
        for _ in range(count):
            await asyncio.wait_for(done.get(), timeout=10)
            engine.wake()  # the next wake-up now, rather than a poll interval later
    finally:
        await engine.shutdown()
        await engine.drain()


def _fire(outcome: FireOutcome) -> FireResult:
    due = datetime(2027, 2, 1, tzinfo=UTC)
    return FireResult(
        fire_id=uuid.uuid4(),
        schedule_id=uuid.uuid4(),
        org_id=uuid.uuid4(),
        scheduled_for=due,
        fired_at=due,
        outcome=outcome,
        run_id=None,
        detail="run 1 was still running",
        notify=False,
    )


@pytest.mark.usefixtures("restore_logging")
async def test_idle_wake_ups_write_nothing_at_info_and_each_fire_one_line(
    app: FastAPI, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", "text")
    engine = make_engine(app, settings, FakeClock(datetime(2027, 2, 1, tzinfo=UTC)))
    await _idle_wake_ups(engine, WAKE_UPS)
    engine.handle_fired([_fire(FireOutcome.SKIPPED)])

    lines = capsys.readouterr().err.splitlines()
    assert [line for line in lines if "apscheduler" in line] == []
    (fired,) = [line for line in lines if "app.scheduling.engine" in line and "schedule " in line]
    assert "skipped (run 1 was still running)" in fired


@pytest.mark.usefixtures("restore_logging")
async def test_a_burst_logs_its_first_fires_one_by_one_then_counts_the_rest(
    app: FastAPI, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", "text")
    engine = make_engine(app, settings, FakeClock(datetime(2027, 2, 1, tzinfo=UTC)))
    burst = [_fire(FireOutcome.SKIPPED) for _ in range(LOGGED_FIRES_PER_BATCH + 30)]
    burst += [_fire(FireOutcome.FAILED), _fire(FireOutcome.QUEUED)]
    engine.handle_fired(burst)

    lines = [line for line in capsys.readouterr().err.splitlines() if "app.scheduling" in line]
    one_by_one = [line for line in lines if "schedule " in line and " due " in line]
    logged = {line.split("schedule ")[1].split(" ")[0] for line in one_by_one}
    first = {str(fire.schedule_id) for fire in burst[:LOGGED_FIRES_PER_BATCH]}
    assert logged == first | {str(burst[-2].schedule_id)}  # and the failed one
    assert sum("ERROR" in line for line in one_by_one) == 1
    (summary,) = [line for line in lines if "more fires of this batch" in line]
    assert "31 more fires of this batch, not logged one by one: 30 skipped, 1 queued" in summary


@pytest.mark.usefixtures("restore_logging")
async def test_apschedulers_lines_are_there_at_debug(
    app: FastAPI, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("DEBUG", "text")
    engine = make_engine(app, settings, FakeClock(datetime(2027, 2, 1, tzinfo=UTC)))
    await _idle_wake_ups(engine, WAKE_UPS)

    lines = capsys.readouterr().err.splitlines()
    running = [line for line in lines if "apscheduler" in line and "Running job" in line]
    assert len(running) >= WAKE_UPS


@pytest.mark.usefixtures("restore_logging")
def test_apschedulers_warnings_still_show_at_info(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "text")
    logging.getLogger("apscheduler.executors.default").warning("Run time of job was missed")
    assert "Run time of job was missed" in capsys.readouterr().err
