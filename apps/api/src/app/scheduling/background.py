"""Background work of an instance: run recovery and execution, the cleanup worker, and the
schedule engine's start and stop, as the instance's role asks; and the drain on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from app.core.clock import Clock, utcnow
from app.core.config import Settings
from app.core.database import Database
from app.runs.executor import RunExecutor
from app.runs.results import purge_expired_results
from app.scheduling.engine import CollectionScheduler
from app.scheduling.fires import purge_expired_fires

if TYPE_CHECKING:
    from app.instance import Instance

logger = logging.getLogger(__name__)


class BackgroundWork:
    """What an instance does besides answering requests: everything but the API when its
    role executes runs (`all`, `worker`), nothing on an API-only replica."""

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self._cleanup: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Resume interrupted runs, then execute runs, clean up and fire schedules."""
        instance, settings = self.instance, self.instance.settings
        if not settings.executes_runs:
            logger.info(
                "API-only instance (INSTANCE_ROLE=api): runs started here are executed by "
                "the instances that execute runs, schedules fired by them"
            )
            return
        await collection_startup_recovery(instance.executor)
        self._cleanup = asyncio.create_task(
            cleanup_worker(instance.database, settings), name="cleanup"
        )
        scheduler_startup(instance.scheduler, settings)

    async def drain(self) -> None:
        """Stop claiming fires and runs, hand the runs executing here over to other
        instances (at their next checkpoint, at most SHUTDOWN_DRAIN_SECONDS), then stop."""
        instance, settings = self.instance, self.instance.settings
        if not settings.executes_runs:  # nothing to drain; the runs it announced are sent
            if instance.executor.wakeups is not None:
                await instance.executor.wakeups.flush()
            return
        if self._cleanup is not None:
            self._cleanup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cleanup
        # The executor first: it refuses runs from then on, the fires of a tick in flight
        # included (they go to other instances).
        await asyncio.gather(
            instance.executor.drain(settings.shutdown_drain_seconds),
            scheduler_shutdown(instance.scheduler),
        )


async def collection_startup_recovery(executor: RunExecutor) -> None:
    """Resume running runs whose process died (expired lease) and start the executor."""
    await executor.start()
    if executor.running:
        logger.info(
            "recovered %d interrupted run(s): %s",
            len(executor.running),
            ", ".join(str(run_id) for run_id in executor.running),
        )


async def cleanup_worker(database: Database, settings: Settings, clock: Clock = utcnow) -> None:
    """Forever: delete run results and schedule fire-log rows older than
    RESULTS_RETENTION_DAYS, in small batches."""
    retention = timedelta(days=settings.results_retention_days)
    purges = [(purge_expired_results, "result"), (purge_expired_fires, "schedule fire-log")]
    while True:
        try:
            for purge, rows in purges:
                deleted = await purge(
                    database,
                    now=clock(),
                    retention=retention,
                    batch_size=settings.cleanup_batch_size,
                )
                if deleted:
                    logger.info("cleanup deleted %d %s rows past retention", deleted, rows)
        except Exception:
            logger.exception("cleanup failed; retrying at the next interval")
        await asyncio.sleep(settings.cleanup_interval_seconds)


def scheduler_startup(scheduler: CollectionScheduler, settings: Settings) -> None:
    """Start the schedule engine, unless SCHEDULER_ENABLED=false."""
    if not settings.scheduler_enabled:
        logger.info("scheduler disabled on this instance (SCHEDULER_ENABLED=false)")
        return
    scheduler.start()


async def scheduler_shutdown(scheduler: CollectionScheduler) -> None:
    """Stop the schedule engine and let follow-up work of the last fires finish."""
    await scheduler.shutdown()
    await scheduler.drain()
