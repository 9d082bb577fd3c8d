"""Background work of an instance: run recovery and execution, the cleanup worker, and the
schedule engine's start and stop."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from app.core.clock import Clock, utcnow
from app.core.config import Settings
from app.core.database import Database
from app.runs.executor import RunExecutor
from app.runs.results import purge_expired_results
from app.scheduling.engine import CollectionScheduler
from app.scheduling.fires import purge_expired_fires

logger = logging.getLogger(__name__)


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
    """Start the schedule engine, unless SCHEDULER_ENABLED=false (an API-only replica)."""
    if not settings.scheduler_enabled:
        logger.info("scheduler disabled on this instance (SCHEDULER_ENABLED=false)")
        return
    scheduler.start()


async def scheduler_shutdown(scheduler: CollectionScheduler) -> None:
    """Stop the schedule engine and let follow-up work of the last fires finish."""
    await scheduler.shutdown()
    await scheduler.drain()
