"""The schedule engine of an instance: an APScheduler `AsyncIOScheduler` that wakes up when
the next schedule is due and fires what is due.

It keeps no per-schedule jobs: the database holds every schedule and its `next_run_at`,
and one APScheduler job, re-armed after each wake-up, drives the timing. It wakes at the
earliest due time, and when a schedule changes: on this instance at once, on another one
at once on PostgreSQL (`app.scheduling.changes`) and otherwise after
`SCHEDULER_POLL_SECONDS` at the latest. Memory and start-up time therefore do not grow
with the number of schedules.

In a service the engine runs on an event loop of its own, in a thread (`own_loop`): the
runs this instance executes keep the main loop busy, and a fire waiting for turns of that
loop (about ten, from its wake-up to its commit) would be late by as many of them.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from prometheus_client import CollectorRegistry, Counter, Histogram

from app.core.clock import Clock, utcnow
from app.core.config import Settings
from app.core.database import SYSTEM, Database, acting_as
from app.core.observability import exception_line
from app.runs.executor import RunExecutor
from app.runs.notifications import Mailer, admin_emails
from app.scheduling.changes import ChangeListener
from app.scheduling.fires import FireResult
from app.scheduling.loop_thread import LoopThread
from app.scheduling.schedules import ScheduleService
from app.tables import FireOutcome

logger = logging.getLogger(__name__)

JOB_ID = "collection-schedules"
LOGGED_FIRES_PER_BATCH = 20
"""A batch's fires logged one line each; the rest (a burst's) are counted in one line. Every
fire is in its schedule's fire log; failed fires are always logged one by one."""
ENGINE_POOL_SIZE = 2
"""Connections of the engine's own pool (on its own loop): one listens for changes
(PostgreSQL), one fires; as many again may overflow."""
FAILURE_BACKOFF_MAX = timedelta(seconds=60)
"""Longest wait before retrying a pass that failed (the database away, a bug): failed
passes are retried after one poll interval, doubling each time up to this."""
HELD_ELSEWHERE_RETRY = timedelta(milliseconds=100)
"""How soon to look again at schedules that were due when a pass began and that the pass
did not claim: another replica's transaction holds them (PostgreSQL's SKIP LOCKED) and
fires them, or, if it fails, leaves them due for the next look."""
NOTIFY_OUTCOMES = {
    FireOutcome.SKIPPED,
    FireOutcome.MISSED,
    FireOutcome.FAILED,
    FireOutcome.NO_PRESET,
}


class ScheduleMetrics:
    """Fires by outcome and fire delay (due time → run created), for /metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.fires = Counter(
            "schedule_fires_total",
            "Schedule fires handled by this instance, by outcome, trigger (schedule: a due "
            "time; manual: run now; backfill: a past due time, on request) and the schedule's "
            "overlap policy.",
            ["outcome", "trigger", "policy"],
            registry=registry,
        )
        self.delay = Histogram(
            "schedule_fire_delay_seconds",
            "Seconds from a schedule's fire time (its due time plus its jitter) until its run "
            "was created: the engine's own delay.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600),
            registry=registry,
        )


class CollectionScheduler:
    """Wakes up when schedules are due and fires them (see the module docstring)."""

    def __init__(
        self,
        schedules: ScheduleService,
        executor: RunExecutor,
        mailer: Mailer,
        settings: Settings,
        *,
        metrics: ScheduleMetrics | None = None,
        clock: Clock = utcnow,
        own_loop: bool = False,
    ) -> None:
        self.schedules = schedules
        self.firing = schedules
        """The service that fires: `schedules`, or one over the engine's own database pool
        while it runs on its own loop."""
        self.executor = executor
        self.mailer = mailer
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.own_loop = own_loop
        self.poll = timedelta(seconds=settings.scheduler_poll_seconds)
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self._ticking = False
        self._dirty = False
        self._next_wake: datetime | None = None
        self._background: set[asyncio.Task[object]] = set()
        self._tick_task: asyncio.Task[object] | None = None
        self._failures = 0  # passes failed in a row
        self._home: asyncio.AbstractEventLoop | None = None
        self._thread: LoopThread | None = None
        self._changes: ChangeListener | None = None
        self.last_tick_at: datetime | None = None

    @property
    def running(self) -> bool:
        """Whether the APScheduler loop runs."""
        return bool(self.scheduler.running)

    def start(self) -> None:
        """Start APScheduler and fire whatever is due now (missed while we were down).

        With `own_loop`, APScheduler, the ticks and their transactions run on an event loop
        of their own, in a thread, over a small pool of connections of their own: runs
        executing on this loop cannot delay a fire. What follows a committed fire (starting
        its run here, mail, metrics) still happens on this loop.
        """
        self._home = asyncio.get_running_loop()
        if not self.own_loop:
            self._start_here()
            return
        self._thread = LoopThread("schedule-engine")
        self._thread.call(self._start_in_thread)

    def _start_in_thread(self) -> None:
        own = self.settings.model_copy(update={"database_pool_size": ENGINE_POOL_SIZE})
        database = Database.from_settings(own)
        self.firing = ScheduleService(
            database, self.settings, self.schedules.runs, clock=self.schedules.clock
        )
        self._start_here()

    def _start_here(self) -> None:
        self.scheduler.add_listener(self._after_tick, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        self.scheduler.start()
        self._arm(self.clock())
        self._changes = ChangeListener(
            self.firing.database, self._wake_here, retry=self.poll.total_seconds()
        )
        self._changes.start()
        logger.info("scheduler started; polling every %ss", self.poll.total_seconds())

    async def shutdown(self) -> None:
        """Stop waking up, once a tick in flight has finished its fires."""
        thread = self._thread
        if thread is None:
            await self._stop_here()
            return
        await thread.run(self._stop_here())
        await thread.stop()
        self._thread = None

    async def _stop_here(self) -> None:
        """APScheduler's asyncio executor cancels the jobs still running when it shuts down
        (and logs each as a failed job), so first pause it, let a tick it has just handed
        to the loop start, and wait for the tick to end."""
        if not self.scheduler.running:
            return
        self.scheduler.pause()
        await asyncio.sleep(0)  # a tick submitted just now takes its first step (see tick)
        tick = self._tick_task
        if tick is not None and tick is not asyncio.current_task():
            await asyncio.wait({tick})
        self.scheduler.shutdown(wait=False)
        await asyncio.sleep(0)  # APScheduler stops on its loop's next turn
        if self._changes is not None:
            await self._changes.stop()
            self._changes = None
        if self.firing is not self.schedules:
            await self.firing.database.dispose()
            self.firing = self.schedules
        logger.info("scheduler stopped")

    def wake(self) -> None:
        """Look at the schedules again now (one of them changed)."""
        if self._thread is not None:
            self._thread.call_soon(self._wake_here)
        else:
            self._wake_here()

    def _wake_here(self) -> None:
        if self._ticking:
            self._dirty = True
        elif self.scheduler.running:
            self._arm(self.clock())

    def _after_tick(self, event: JobExecutionEvent) -> None:
        """Re-arm once APScheduler has counted the tick as finished.

        Re-arming from inside the tick would be too early: APScheduler still counts the
        running instance, so a job due at once would be skipped ("maximum number of running
        instances reached") and, its date trigger spent, dropped; the scheduler would
        never wake again.
        """
        if event.job_id != JOB_ID or not self.scheduler.running:
            return
        wake_at, self._next_wake = self._next_wake, None
        self._arm(wake_at if wake_at is not None else self.clock() + self.poll)

    def _arm(self, at: datetime) -> None:
        """Run the tick at `at` on the injected clock (translated to real time)."""
        real = datetime.now(UTC) + max(timedelta(0), at - self.clock())
        self.scheduler.add_job(
            self.tick,
            trigger=DateTrigger(run_date=real),
            id=JOB_ID,
            replace_existing=True,
            misfire_grace_time=None,
        )

    async def tick(self) -> list[FireResult]:
        """Fire what is due and choose the next wake-up (armed by `_after_tick`).

        A pass that fails is retried after a back-off (`retry_delay`), never at once: the
        due times it did not fire are still due, and re-arming for them would spin.
        """
        self._ticking = True
        self._tick_task = asyncio.current_task()  # before any await: `shutdown` relies on it
        began = self.clock()
        next_due: datetime | None = None
        results: list[FireResult] = []
        failed = fired = False
        try:
            with acting_as(SYSTEM):
                try:
                    # A read first: most wake-ups find nothing due, and then take no write
                    # transaction (on SQLite, the write lock every writer waits for).
                    next_due = await self.firing.next_due()
                    if next_due is not None and next_due <= began:
                        fired = True
                        # each committed batch is followed up at once (runs, logs, mail),
                        # even when a later batch fails
                        results = await self.firing.fire_due(on_batch=self._follow_up)
                except Exception as exc:
                    failed = True
                    self._pass_failed(exc)
                else:
                    if self._failures:
                        logger.info(
                            "firing due schedules works again after %d failed passes",
                            self._failures,
                        )
                        self._failures = 0
                self.last_tick_at = self.clock()
                if fired and not failed:
                    try:
                        next_due = await self.firing.next_due()
                    except Exception:
                        logger.exception("reading the next due time failed")
                        next_due = None
        finally:
            self._ticking = False
            self._tick_task = None
        now = self.clock()
        wake_at = now + self.poll
        if failed:
            self._dirty = False  # a change made meanwhile is looked at by the retry
            wake_at = now + self.retry_delay
        elif self._dirty:
            self._dirty = False
            wake_at = now
        elif next_due is not None and next_due <= began:
            # Due before this pass and still due: held by another replica's pass. Looking
            # again at once would spin (a claim and a read, over and over) until it commits.
            wake_at = min(wake_at, now + HELD_ELSEWHERE_RETRY)
        elif next_due is not None:
            wake_at = min(wake_at, max(now, next_due))
        self._next_wake = wake_at
        return results

    @property
    def retry_delay(self) -> timedelta:
        """How long to wait before retrying after the passes that failed in a row."""
        if not self._failures:
            return timedelta(0)
        return min(FAILURE_BACKOFF_MAX, self.poll * (1 << min(self._failures - 1, 16)))

    def _pass_failed(self, exc: Exception) -> None:
        """Count a failed pass; the first failure is logged in full, repeats in one line."""
        self._failures += 1
        delay = self.retry_delay.total_seconds()
        if self._failures == 1:
            logger.exception("firing due schedules failed; retrying in %.0f s", delay)
        else:
            logger.error(
                "firing due schedules failed again (%d passes in a row: %s); retrying in %.0f s",
                self._failures,
                exception_line(exc),
                delay,
            )

    def _follow_up(self, results: list[FireResult]) -> None:
        """`handle_fired`, on the loop that started the engine."""
        if self._home is None or self._thread is None:
            self.handle_fired(results)
        else:
            self._home.call_soon_threadsafe(self.handle_fired, results)

    def handle_fired(self, results: list[FireResult]) -> None:
        """Once fires are committed: metrics, logs, start runs here, notify admins."""
        started = []
        counts: collections.Counter[tuple[str, str, str]] = collections.Counter()
        unlogged: collections.Counter[str] = collections.Counter()
        for index, result in enumerate(results):
            trigger = "backfill" if result.backfill else "manual" if result.manual else "schedule"
            counts[result.outcome.value, trigger, result.policy.value] += 1
            if result.outcome is FireOutcome.STARTED and result.run_id is not None:
                started.append(result.run_id)
                if self.metrics is not None and not result.manual:
                    # the engine's own delay: past the fire time, jitter excluded
                    due = result.scheduled_for + result.jitter
                    delay = (result.fired_at - due).total_seconds()
                    self.metrics.delay.observe(max(delay, 0.0))
            if index >= LOGGED_FIRES_PER_BATCH and result.outcome is not FireOutcome.FAILED:
                unlogged[result.outcome.value] += 1
            else:
                _log_fire(result)
            if result.replaced_run_id is not None:
                # cancelled for this fire: stop it here if it runs here; the queued run
                # starts once it reads cancelled (the executor's sweep starts it)
                self.executor.interrupt(result.replaced_run_id)
                self.executor.poke()
            # A run by hand that did not start was answered to its caller: no mail.
            if result.notify and result.outcome in NOTIFY_OUTCOMES and not result.manual:
                self._notify_fire(result)
        if unlogged:
            logger.info(
                "%d more fires of this batch, not logged one by one: %s (each is in its "
                "schedule's fire log)",
                unlogged.total(),
                ", ".join(f"{count} {outcome}" for outcome, count in unlogged.most_common()),
                extra={"fires": unlogged.total()},
            )
        if self.metrics is not None:
            for labels, count in counts.items():
                self.metrics.fires.labels(*labels).inc(count)
        if started:
            self._spawn(self._execute_here(started))

    async def _execute_here(self, run_ids: list[uuid.UUID]) -> None:
        """Execute fired runs on this instance while it has room. The others wait (running,
        without a lease) for the executor sweep of any replica: a burst of fires does not
        queue thousands of claims here."""
        for run_id in run_ids:
            if not self.executor.has_capacity:
                return
            await self.executor.submit(run_id)

    def _spawn(self, work: Coroutine[object, object, object]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Wait for the follow-up work of fires (run submission, mail): shutdown and tests."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def _notify_fire(self, result: FireResult) -> None:
        subject = f"Scheduled collection run {result.outcome.value.replace('_', ' ')}"
        body = (
            f"The collection schedule due at {result.scheduled_for:%Y-%m-%d %H:%M} UTC "
            f"did not start a run: {result.outcome.value}.\n\n{result.detail or ''}\n"
        )
        if result.run_id:
            body += f"\nRun: {result.run_id}\n"
        self._spawn(self._mail_admins(result, subject, body))

    async def _mail_admins(self, result: FireResult, subject: str, body: str) -> None:
        recipients = await admin_emails(self.schedules.database, result.org_id)
        await self.mailer.send(recipients, subject, body)


def _log_fire(result: FireResult) -> None:
    """One fire's line: a started run at INFO, a fire that did not start one at WARNING (a
    backfill's at INFO: it queues by design), a failed one at ERROR."""
    log = {"schedule_id": str(result.schedule_id), "outcome": result.outcome.value}
    when = "run by hand" if result.manual else f"due {result.scheduled_for.isoformat()}"
    if result.backfill:
        when = f"backfill of {result.scheduled_for.isoformat()}"
    if result.outcome is FireOutcome.STARTED and result.run_id is not None:
        logger.info(
            "schedule %s %s: started run %s", result.schedule_id, when, result.run_id, extra=log
        )
        return
    level = logging.ERROR if result.outcome is FireOutcome.FAILED else logging.WARNING
    logger.log(
        logging.INFO if result.backfill else level,
        "schedule %s %s: %s (%s)",
        result.schedule_id,
        when,
        result.outcome.value,
        result.detail,
        extra=log,
    )
