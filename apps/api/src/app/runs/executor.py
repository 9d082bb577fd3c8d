"""Executes running runs in the background of this instance, under leases.

Each run this instance executes is an asyncio task holding the run's lease, renewed by a
heartbeat. A periodic sweep (and start-up recovery) takes over running runs whose lease
expired, because the process executing them died, and resumes them from their checkpoint,
and settles pausing or cancelling runs whose executor died to paused or cancelled.

A pause or cancel of a local run sets its stop event (at once when the request came to
this instance, else at the next heartbeat): the run starts no new provider call, the calls
in flight finish and are checkpointed, and giving up its lease settles it.

An instance whose role is `api` executes nothing: the runs started through it are left to
the instances that execute runs, which it wakes (`RunWakeups`). On shutdown an instance
drains (`drain`): it claims nothing more, its runs stop at their next checkpoint and their
leases are released, so another instance continues them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection

from app.core.config import Settings
from app.core.database import db_actor
from app.core.observability import exception_line
from app.runs.leases import Lease, LeaseLostError, Leases
from app.runs.pipeline import Pipeline, RunHandedOverError, RunInterruptedError
from app.runs.wakeups import RunWakeups
from app.tables import RunStatus

logger = logging.getLogger(__name__)

MAX_UNEXPECTED_ERRORS = 3
"""Unexpected errors (bugs, data the database refuses) one instance tolerates in one run
before failing it; between attempts it waits a lease period, doubling each time."""


class RunExecutor:
    """Runs at most `run_max_concurrent` collection runs at once in this process."""

    def __init__(
        self,
        leases: Leases,
        pipeline: Pipeline,
        settings: Settings,
        *,
        wakeups: RunWakeups | None = None,
    ) -> None:
        self.leases = leases
        self.pipeline = pipeline
        self.wakeups = wakeups
        self.owner = settings.instance_id
        self.executes = settings.executes_runs
        self.draining = False
        self.max_concurrent = settings.run_max_concurrent
        self.lease_seconds = settings.run_lease_seconds
        self.heartbeat_interval = settings.run_lease_seconds / 3
        self.sweep_interval = settings.run_sweep_seconds
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._leases: dict[uuid.UUID, Lease] = {}
        self._stops: dict[uuid.UUID, asyncio.Event] = {}
        self._handovers: dict[uuid.UUID, asyncio.Event] = {}
        self._handed_over: set[uuid.UUID] = set()  # released at a checkpoint by `drain`
        self._released: set[uuid.UUID] = set()  # leases released while draining
        self._claiming: set[uuid.UUID] = set()
        # Runs that raised an unexpected error here: how many times, and the loop time
        # before which the sweep leaves them alone.
        self._errors: dict[uuid.UUID, int] = {}
        self._retry_at: dict[uuid.UUID, float] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # tests replace it
        # Called with the run id when a run this instance executed or settled ended
        # (completed, failed or cancelled).
        self.on_finished: list[Callable[[uuid.UUID], Awaitable[None]]] = []

    @property
    def running(self) -> list[uuid.UUID]:
        """Runs this instance executes right now."""
        return list(self._tasks)

    @property
    def has_capacity(self) -> bool:
        """Whether another run can start here."""
        return len(self._tasks) + len(self._claiming) < self.max_concurrent

    @property
    def accepting(self) -> bool:
        """Whether this instance takes runs: it executes runs and is not draining."""
        return self.executes and not self.draining

    @property
    def alive(self) -> bool:
        """False when the heartbeat-and-sweep loop ended though nobody stopped it (a bug):
        the liveness probe then asks for a restart."""
        loop = self._loop_task
        return loop is None or not loop.done() or self.draining

    async def start(self) -> None:
        """Recover orphaned runs now, then keep heartbeating and sweeping, and sweep
        whenever another instance announces a run left to others."""
        await self.sweep()
        self._loop_task = asyncio.create_task(self._loop(), name="run-executor")
        if self.wakeups is not None:
            self._listen_task = asyncio.create_task(
                self.wakeups.listen(self._announced), name="run-wakeups"
            )

    async def drain(self, within: float) -> None:
        """Hand this instance's runs over to other instances, for shutdown.

        Claims nothing more; each run starts no new provider call, and once the calls in
        flight are checkpointed it stops there and its lease is released, so another
        instance continues it at once (woken on PostgreSQL, else at its next sweep) rather
        than when the lease expires. A run not at a checkpoint within `within` seconds is
        stopped where it is and released too: its calls in flight are lost and made again
        by whoever continues. Runs that end or pause meanwhile do so here, as usual.
        """
        self.draining = True
        if self._listen_task is not None:
            self._listen_task.cancel()
        runs = dict(self._tasks)
        if runs:
            logger.info(
                "draining: stopping %s at the next checkpoint for other instances to "
                "continue (waiting at most %g s)",
                _runs(len(runs)),
                within,
            )
        for run_id in runs:
            self._handovers[run_id].set()
            self._stops[run_id].set()
        late = await self._wait_at_most(runs.values(), within)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        tasks = [task for task in (self._loop_task, self._listen_task) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for lease in list(self._leases.values()):  # none, unless a task failed to release
            if await self._release(lease) is not None:
                self._released.add(lease.run_id)
        self._leases.clear()
        if self._released:
            self._announce()  # (each run released above announced itself already)
        if self.wakeups is not None:
            await self.wakeups.flush()
        late_ids = {run_id for run_id, task in runs.items() if task in late}
        logger.info("draining: %s", self._drain_summary(runs, late_ids, within))

    async def _wait_at_most(
        self, tasks: Collection[asyncio.Task[None]], seconds: float
    ) -> list[asyncio.Task[None]]:
        """Wait until `tasks` are done or `seconds` passed; those still going."""
        if not tasks:
            return []
        everything = asyncio.ensure_future(asyncio.wait(tasks))
        timer = asyncio.ensure_future(self._sleep(seconds))
        try:
            await asyncio.wait((everything, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            everything.cancel()
            timer.cancel()
        return [task for task in tasks if not task.done()]

    def _drain_summary(
        self, runs: Collection[uuid.UUID], late: Collection[uuid.UUID], within: float
    ) -> str:
        """What became of the runs this instance executed when it began to drain."""
        if not runs:
            return "no runs to hand over"
        late = set(late)
        cut_off = self._released & late
        at_checkpoint = (self._handed_over & self._released) - late
        kept = (self._handed_over | late) - self._released
        ended = len(runs) - len(at_checkpoint) - len(cut_off) - len(kept)
        released = len(at_checkpoint) + len(cut_off)
        parts = [f"{len(at_checkpoint)} at a checkpoint"] if at_checkpoint else []
        if cut_off:
            its = "its" if len(cut_off) == 1 else "their"
            parts.append(
                f"{len(cut_off)} stopped by the {within:g} s drain timeout before a checkpoint, "
                f"{its} provider calls in flight lost"
            )
        summary = f"{_runs(released)} released to other instances"
        if parts:
            summary += f" ({'; '.join(parts)})"
        if kept:
            summary += (
                f"; {_runs(len(kept))} could not be released: another instance takes "
                "them over when their lease expires"
            )
        if ended:
            summary += f"; {_runs(ended)} ended, paused or taken over meanwhile"
        return summary

    async def submit(self, run_id: uuid.UUID) -> bool:
        """Execute `run_id` here if there is room and nobody else does; True if started.
        Left to the other instances (and announced to them) when this one has no room,
        executes no runs or is draining."""
        if run_id in self._tasks or run_id in self._claiming:
            return False
        if not self.accepting or not self.has_capacity:
            self._announce()
            return False
        self._claiming.add(run_id)
        try:
            lease = await self.leases.claim(run_id, owner=self.owner)
            if lease is None:
                return False
            self._leases[run_id] = lease
            self._stops[run_id] = asyncio.Event()
            self._handovers[run_id] = asyncio.Event()
            self._tasks[run_id] = asyncio.create_task(self._execute(lease), name=f"run-{run_id}")
            return True
        finally:
            self._claiming.discard(run_id)

    def interrupt(self, run_id: uuid.UUID) -> None:
        """Stop a local run that is pausing or cancelling: it starts no new provider call,
        and settles once the calls in flight are checkpointed."""
        stop = self._stops.get(run_id)
        if stop is not None:
            stop.set()

    def poke(self) -> None:
        """Sweep soon (a run was resumed or capacity freed up): here, or on the instances
        that execute runs when this one takes none."""
        if self.accepting:
            self._wake.set()
        else:
            self._announce()

    def _announced(self) -> None:
        """Another instance left a run to others: sweep here soon, if this one takes runs."""
        if self.accepting:
            self._wake.set()

    def _announce(self) -> None:
        if self.wakeups is not None:
            self.wakeups.announce()

    async def _execute(self, lease: Lease) -> None:
        # This task may have been created inside a request: its work is nobody's request,
        # so it runs as the service's own database role.
        db_actor.set(None)
        log = {"run_id": str(lease.run_id)}
        release = True
        try:
            status = await self.pipeline.execute(
                lease, self._stops[lease.run_id], self._handovers[lease.run_id]
            )
            release = False  # a finished run's lease is cleared with its final status
            # not ours any more: the heartbeat must not take it for a lost lease and cancel
            # this task while the finish hooks run
            self._leases.pop(lease.run_id, None)
            logger.info("run %s finished: %s", lease.run_id, status.value, extra=log)
            await self._finished(lease.run_id)
        except RunInterruptedError as exc:
            self._errors.pop(lease.run_id, None)  # paused or cancelled: a resume starts afresh
            release = False
            # nothing is in flight any more: giving up the lease settles the pause or cancel
            # (if this fails, the lease expires and the sweep settles it)
            settled = await asyncio.shield(self._release(lease))
            self._leases.pop(lease.run_id, None)  # released: see above
            logger.info(
                "run %s stopped: %s", lease.run_id, (settled or exc.status).value, extra=log
            )
            if settled is RunStatus.CANCELLED:
                await self._finished(lease.run_id)
        except RunHandedOverError:
            self._handed_over.add(lease.run_id)  # released below
            logger.info(
                "run %s: stopped at a checkpoint, for another instance to continue",
                lease.run_id,
                extra=log,
            )
        except LeaseLostError:
            self._errors.pop(lease.run_id, None)
            release = False
            logger.warning(
                "run %s: lease lost, another instance continues", lease.run_id, extra=log
            )
        except asyncio.CancelledError:
            logger.info("run %s: execution stopped here", lease.run_id, extra=log)
        except Exception as exc:
            # Not a provider failure (those fail the run at once): a bug, or a row the
            # database refused. Retry from the checkpoint after a while; fail the run when
            # it keeps happening, rather than spin on it (and on the providers' quota).
            release = False
            await self._unexpected(lease, exc, log)
        finally:
            self._tasks.pop(lease.run_id, None)
            self._leases.pop(lease.run_id, None)
            self._stops.pop(lease.run_id, None)
            self._handovers.pop(lease.run_id, None)
            if release:
                released = await asyncio.shield(self._release(lease))
                if released is not None and self.draining:
                    self._released.add(lease.run_id)
            self.poke()  # draining: the other instances take the run over now

    async def _release(self, lease: Lease) -> RunStatus | None:
        """Give the lease up (settling a pause or cancel); None if that failed."""
        try:
            return await self.leases.release(lease)
        except Exception:
            logger.warning("run %s: could not release its lease", lease.run_id, exc_info=True)
            return None

    async def _unexpected(self, lease: Lease, exc: Exception, log: dict[str, str]) -> None:
        run_id = lease.run_id
        count = self._errors[run_id] = self._errors.get(run_id, 0) + 1
        if count < MAX_UNEXPECTED_ERRORS:
            delay = self.lease_seconds * 2 ** (count - 1)
            self._retry_at[run_id] = asyncio.get_running_loop().time() + delay
            logger.exception(
                "run %s: unexpected error (%d of %d); retrying from its checkpoint in %.0f s",
                run_id,
                count,
                MAX_UNEXPECTED_ERRORS,
                delay,
                extra=log,
            )
            return
        logger.exception(
            "run %s: unexpected error (%d of %d); failing the run", run_id, count, count, extra=log
        )
        error = f"stopped after {count} unexpected errors; the last: {type(exc).__name__}: {exc}"
        try:
            await self.pipeline.fail(lease, error=error[:2000])
        except RunInterruptedError:
            return  # paused, cancelled or taken over meanwhile: that status stands
        except Exception:
            logger.exception("run %s: could not be marked failed", run_id, extra=log)
            return
        self._leases.pop(run_id, None)  # failed, its lease cleared: see `_execute`
        await self._finished(run_id)

    async def _finished(self, run_id: uuid.UUID) -> None:
        """A run this instance executed or settled completed, failed or was cancelled."""
        self._errors.pop(run_id, None)
        self._retry_at.pop(run_id, None)
        self.poke()  # a run queued behind this one may start now
        for hook in self.on_finished:
            try:
                await hook(run_id)
            except Exception:
                logger.exception(
                    "run %s: finish hook failed", run_id, extra={"run_id": str(run_id)}
                )

    async def heartbeat(self) -> None:
        """Renew leases; stop local runs that are pausing or cancelling, or were taken over."""
        leases = list(self._leases)
        held = await self.leases.renew(leases, owner=self.owner)
        unheld = [run_id for run_id in leases if run_id not in held]
        # A run that ended here while renew() ran is not lost: its finish hooks run now.
        ended = await self.leases.ended(unheld) if unheld else set()
        for run_id in leases:  # not runs submitted while renew() ran: they hold fresh leases
            task = self._tasks.get(run_id)
            if task is None or run_id in ended:
                continue
            status = held.get(run_id)
            if status is None:
                logger.warning("run %s: lease lost; stopping here", run_id)
                task.cancel()
            elif status in (RunStatus.PAUSING, RunStatus.CANCELLING):
                # The request came to another instance: start no new calls, let the ones
                # in flight finish (a checkpoint may have noticed already).
                self.interrupt(run_id)

    async def sweep(self) -> None:
        """Settle pausing or cancelling runs and take over running runs that nobody executes
        (start-up recovery uses this too)."""
        now = asyncio.get_running_loop().time()
        for run_id, retry_at in list(self._retry_at.items()):
            if retry_at <= now:
                del self._retry_at[run_id]
        busy = [*self._tasks, *self._claiming, *self._retry_at]
        for run_id, status in await self.leases.settle_abandoned():
            if status is RunStatus.CANCELLED:
                await self._finished(run_id)
        started = await self.leases.start_queued()  # executed below like any run nobody executes
        free = self.max_concurrent - len(self._tasks) - len(self._claiming)
        if free <= 0:
            if started:
                self._announce()  # no room here: another instance may execute them now
            return
        for run_id in await self.leases.orphaned_runs(owner=self.owner, limit=free, exclude=busy):
            if await self.submit(run_id):
                logger.info("run %s: taken over by %s", run_id, self.owner)

    async def _loop(self) -> None:
        """Heartbeat every `heartbeat_interval`, sweep every `sweep_interval` or when poked.

        A failing round (the database away, a bug) is retried after a back-off that starts
        at one heartbeat interval and doubles up to one lease period (longer would not
        help: leases not renewed for that long are lost anyway); pokes wait for it, so a
        failure never turns the loop into a spin.
        """
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + self.sweep_interval
        failures = 0
        while True:
            timeout = max(0.0, min(self.heartbeat_interval, next_sweep - loop.time()))
            # asyncio.timeout, not wait_for: Python 3.11's wait_for loses a cancellation
            # that arrives as the wake-up event is set, and `drain()` would wait forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            woken = self._wake.is_set()
            self._wake.clear()
            try:
                await self.heartbeat()  # also while draining: the runs keep their leases
                if woken or loop.time() >= next_sweep:
                    # A draining instance takes nothing, but its next sweep moves on all
                    # the same: left due, it would make every wait above zero seconds.
                    if not self.draining:
                        await self.sweep()
                    next_sweep = loop.time() + self.sweep_interval
            except Exception as exc:
                failures += 1
                delay = min(
                    max(self.lease_seconds, self.heartbeat_interval),
                    self.heartbeat_interval * (1 << min(failures - 1, 16)),
                )
                if failures == 1:
                    logger.exception("run executor loop failed; retrying in %.0f s", delay)
                else:
                    logger.error(
                        "run executor loop failed again (%d rounds in a row: %s); "
                        "retrying in %.0f s",
                        failures,
                        exception_line(exc),
                        delay,
                    )
                next_sweep = loop.time() + delay
                await self._sleep(delay)
            else:
                if failures:
                    logger.info("run executor loop works again after %d failed rounds", failures)
                failures = 0


def _runs(count: int) -> str:
    return f"{count} run{'' if count == 1 else 's'}"
