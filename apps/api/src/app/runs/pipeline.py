"""The pipeline of a run: Amazon best sellers per category, then eBay listings per
product, each unit of work checkpointed in one short transaction fenced by the run's lease.

The pipeline opens its own transactions (it is nobody's request); a process that lost its
lease cannot write, so a resumed run never duplicates or loses rows.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.clock import Clock, utcnow
from app.core.config import Settings
from app.core.database import Database
from app.providers.base import AmazonProvider, EbayProvider, Listing, Product, QuotaExhaustedError
from app.providers.fair_share import charged_to
from app.providers.resilience import ProviderFailedError
from app.runs import checkpoints, directory, rows, sellers
from app.runs.leases import Lease, LeaseLostError, Leases
from app.tables import (
    CollectionRun,
    RunCategory,
    RunPhase,
    RunProduct,
    RunStatus,
)

logger = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

PRODUCT_BATCH = 200
# How long the writer of a group of checkpoints waits for more to join it (see
# `checkpoints.GroupCommit`): well under a provider call, long enough for the calls that
# ended with its own.
CHECKPOINT_LINGER_SECONDS = 0.002
WAITING_FOR_LENGTH = 300  # collection_runs.waiting_for


class RunInterruptedError(Exception):
    """The run is pausing, paused, cancelling or cancelled: its execution stops here."""

    def __init__(self, status: RunStatus) -> None:
        super().__init__(f"run is {status.value}")
        self.status = status


class RunHandedOverError(Exception):
    """This instance stops executing the run at a checkpoint (it is shutting down): the run
    is still running, and another instance continues it."""


class _PauseWithdrawnError(Exception):
    """A run asked to stop is running again (resumed while pausing): go on from here."""


class Pipeline:
    """Executes a run's two phases under a lease, from its checkpoints."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        leases: Leases,
        *,
        amazon: AmazonProvider,
        ebay: EbayProvider,
        clock: Clock = utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.database = database
        self.leases = leases
        self.amazon = amazon
        self.ebay = ebay
        self.clock = clock
        self.sleep = sleep
        self.concurrency = settings.run_provider_concurrency
        # While a run waits for provider quota: how often it checks for pause or cancel.
        self.quota_check_seconds = settings.run_quota_check_seconds

    async def execute(
        self,
        lease: Lease,
        stop: asyncio.Event | None = None,
        handover: asyncio.Event | None = None,
    ) -> RunStatus:
        """Run (or resume) the pipeline from its checkpoints; return the final status.

        Raises RunInterruptedError when the run is pausing or cancelling (once the provider
        calls in flight are checkpointed) or was paused or cancelled, LeaseLostError when
        another instance took over. `stop`, set by the executor when it sees a pause or
        cancel request, makes it start no new provider calls; checkpoints notice one too.
        With `handover` set as well (this instance is shutting down), a run still running
        once its calls in flight are checkpointed raises RunHandedOverError.
        A provider failing for good fails the run with its message; a provider out of quota
        makes it wait (see `_wait_for_quota`) and go on from its checkpoint.
        """
        stop = stop if stop is not None else asyncio.Event()
        handover = handover if handover is not None else asyncio.Event()
        async with self.database.read() as session:
            run = await session.get_one(CollectionRun, lease.run_id)
        log = {"run_id": str(run.id)}
        phase = run.phase
        try:
            if run.resumes_at is not None:  # taken over while it waited for quota
                await self._wait_for_quota(
                    lease, run.resumes_at, run.waiting_for or "provider quota", stop, handover
                )
            while True:
                try:
                    if phase in (None, RunPhase.AMAZON):
                        logger.info("run %s: Amazon phase", run.id, extra=log)
                        await self.run_amazon_collection(lease, run, stop)
                        phase = RunPhase.EBAY
                    logger.info("run %s: eBay phase", run.id, extra=log)
                    await self.run_ebay_seller_search(lease, run, stop)
                    break
                except QuotaExhaustedError as exc:
                    limit = exc.limit or str(exc)
                    await self._wait_for_quota(lease, exc.resume_at, limit, stop, handover)
                except _PauseWithdrawnError:
                    if handover.is_set():
                        raise RunHandedOverError(f"run {run.id} handed over") from None
                    stop.clear()
                    logger.info("run %s: resumed while pausing; going on", run.id, extra=log)
        except ProviderFailedError as exc:
            logger.warning("run %s failed: %s", run.id, exc, extra=log)
            return await self._finish(lease, RunStatus.FAILED, error=str(exc))
        status = await self._finish(lease, RunStatus.COMPLETED)
        logger.info("run %s: %s", run.id, status.value, extra=log)
        return status

    async def fail(self, lease: Lease, *, error: str) -> None:
        """Fail a run whose execution cannot go on; RunInterruptedError if it is no longer
        running under this lease."""
        await self._finish(lease, RunStatus.FAILED, error=error)

    async def _finish(
        self, lease: Lease, status: RunStatus, *, error: str | None = None
    ) -> RunStatus:
        """End the run with `status`: rank its sellers, record a completed run in the
        directory, then update the run's row, fenced by the lease (RunInterruptedError,
        and nothing written, when it was paused, cancelled or taken over meanwhile).

        The row is updated last on purpose. Once a run's status leaves the active ones in
        an open transaction, on PostgreSQL a fire of the organization's schedules waits on
        the one-active-run index until that transaction ends, and so does a pause or a
        cancel on the row: ranking a large run takes seconds; a commit, milliseconds.
        """
        now = self.clock()
        async with self.database.transaction() as session:
            completed = None
            if status is RunStatus.COMPLETED:
                completed = (
                    await session.execute(
                        sa.select(*directory.COMPLETED_RUN_COLUMNS).where(
                            CollectionRun.id == lease.run_id
                        )
                    )
                ).one_or_none()
                if completed is None:  # gone with its organization
                    raise RunInterruptedError(RunStatus.CANCELLED)
            await sellers.finish(session, lease.run_id)
            if completed is not None:
                await directory.record_run(session, directory.CompletedRun(*completed))
            values: dict[str, Any] = {
                "status": status,
                "finished_at": now,
                "error": error,
                "lease_owner": None,
                "lease_expires_at": None,
                "resumes_at": None,
                "updated_at": now,
            }
            if completed is not None:
                values["phase"] = RunPhase.DONE
                values["directory_recorded_at"] = now  # recorded above, in this transaction
            ended = await session.scalar(
                sa.update(CollectionRun)
                .where(
                    CollectionRun.id == lease.run_id,
                    CollectionRun.lease_owner == lease.owner,
                    CollectionRun.status == RunStatus.RUNNING,
                )
                .values(**values)
                .returning(CollectionRun.id)
            )
            if ended is None:  # paused or cancelled meanwhile, or taken over: all rolled back
                current = await session.scalar(
                    sa.select(CollectionRun.status).where(CollectionRun.id == lease.run_id)
                )
                raise RunInterruptedError(RunStatus(current or RunStatus.CANCELLED))
        return status

    async def _wait_for_quota(
        self,
        lease: Lease,
        resume_at: datetime,
        limit: str,
        stop: asyncio.Event,
        handover: asyncio.Event,
    ) -> None:
        """Wait until `resume_at` for a provider's quota, shown meanwhile as `resumes_at`
        and `waiting_for` (`limit`: which limit it waits for).

        No work is in flight while waiting (the fan-out stopped at its checkpoints). The run
        is checked every `quota_check_seconds`, and at once when `stop` is set, so a pause
        or cancel made on any instance ends the wait promptly (RunInterruptedError), as does
        a takeover (LeaseLostError); the executor's heartbeat keeps the lease meanwhile. If
        this instance stops (`handover`: RunHandedOverError), the run keeps `resumes_at` and
        whoever takes it over waits out the rest.
        """
        log = {"run_id": str(lease.run_id), "resumes_at": resume_at.isoformat()}
        limit = rows.text(limit, WAITING_FOR_LENGTH)
        logger.info("run %s waits until %s for %s", lease.run_id, resume_at, limit, extra=log)
        await self._set_resumes_at(lease, resume_at, limit)
        while (remaining := (resume_at - self.clock()).total_seconds()) > 0:
            await self._sleep_unless(stop, min(remaining, self.quota_check_seconds))
            await self._check_still_ours(lease)
            if handover.is_set():
                raise RunHandedOverError(f"run {lease.run_id} handed over while waiting")
            stop.clear()  # still running: a pause was withdrawn
        await self._set_resumes_at(lease, None, None)
        logger.info("run %s: quota wait over, continuing", lease.run_id, extra=log)

    async def _sleep_unless(self, stop: asyncio.Event, seconds: float) -> None:
        """Sleep `seconds`, or less if `stop` is set meanwhile."""
        if stop.is_set():
            return
        sleeping = asyncio.ensure_future(self.sleep(seconds))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait((sleeping, stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeping.cancel()
            stopped.cancel()

    async def _set_resumes_at(
        self, lease: Lease, resumes_at: datetime | None, waiting_for: str | None
    ) -> None:
        async with self.database.transaction() as session:
            result = await session.execute(
                sa.update(CollectionRun)
                .where(
                    CollectionRun.id == lease.run_id,
                    CollectionRun.lease_owner == lease.owner,
                    CollectionRun.status == RunStatus.RUNNING,
                )
                .values(resumes_at=resumes_at, waiting_for=waiting_for, updated_at=self.clock())
                .execution_options(synchronize_session=False)
            )
        if result.rowcount == 0:  # type: ignore[attr-defined]  # CursorResult of an UPDATE
            await self._check_still_ours(lease)
            raise LeaseLostError(f"lease of run {lease.run_id} lost")

    async def _check_still_ours(self, lease: Lease) -> None:
        """Raise RunInterruptedError if the run is no longer running (a pause or cancel),
        LeaseLostError if another instance holds it now."""
        async with self.database.read() as session:
            row = (
                await session.execute(
                    sa.select(CollectionRun.status, CollectionRun.lease_owner).where(
                        CollectionRun.id == lease.run_id
                    )
                )
            ).one_or_none()
        if row is None:
            raise LeaseLostError(f"run {lease.run_id} no longer exists")
        status, owner = RunStatus(row[0]), row[1]
        if status is not RunStatus.RUNNING:
            raise RunInterruptedError(status)
        if owner != lease.owner:
            raise LeaseLostError(f"lease of run {lease.run_id} lost")

    async def run_amazon_collection(
        self, lease: Lease, run: CollectionRun, stop: asyncio.Event | None = None
    ) -> None:
        """Phase 1: each category's best sellers, one checkpoint per category.

        Both phases ask the providers for the market as of the run's creation (`as_of`), so
        the sample market gives a run resumed on a later market day its own day's data."""
        async with self.database.read() as session:
            pending = list(
                await session.scalars(
                    sa.select(RunCategory)
                    .where(RunCategory.run_id == run.id, RunCategory.done_at.is_(None))
                    .order_by(RunCategory.position)
                )
            )

        async def collect(category: RunCategory) -> list[Product]:
            return await self.amazon.best_sellers(
                category.category_id, run.products_per_category, as_of=run.created_at
            )

        async with self._checkpoint_groups(lease, checkpoints.write_collected) as groups:

            async def checkpoint(
                category: RunCategory, products: list[Product]
            ) -> RunStatus | None:
                product_rows = [rows.product_row(category, product) for product in products]
                return await groups.submit(checkpoints.CollectedCategory(category, product_rows))

            await self._fan_out(lease, pending, collect, checkpoint, stop)
        async with self.database.transaction() as session:
            await session.execute(
                sa.update(CollectionRun)
                .where(CollectionRun.id == run.id, CollectionRun.lease_owner == lease.owner)
                .values(phase=RunPhase.EBAY)
                .execution_options(synchronize_session=False)
            )

    async def run_ebay_seller_search(
        self, lease: Lease, run: CollectionRun, stop: asyncio.Event | None = None
    ) -> None:
        """Phase 2: eBay listings of every collected product, one checkpoint per product
        (written in groups: `checkpoints`)."""

        async def search(product: RunProduct) -> list[Listing]:
            with charged_to(run.org_id):  # its calls are the organization's share of eBay's
                return await self.ebay.search(
                    rows.as_product(product), run.listings_per_product, as_of=run.created_at
                )

        async with self._checkpoint_groups(lease, checkpoints.write_searched) as groups:

            async def checkpoint(product: RunProduct, listings: list[Listing]) -> RunStatus | None:
                unique = {listing.item_id: listing for listing in listings}.values()
                listing_rows = [rows.listing_row(product, listing) for listing in unique]
                return await groups.submit(checkpoints.SearchedProduct(product, listing_rows))

            await self._fan_out(lease, self._unsearched_products(run.id), search, checkpoint, stop)

    async def _unsearched_products(self, run_id: uuid.UUID) -> AsyncIterator[RunProduct]:
        """Products not searched yet, in ranking order, read in small batches."""
        after: tuple[int, int, str] | None = None
        while True:
            async with self.database.read() as session:
                statement = (
                    sa.select(RunProduct)
                    .where(RunProduct.run_id == run_id, RunProduct.searched_at.is_(None))
                    .order_by(RunProduct.category_position, RunProduct.sales_rank, RunProduct.asin)
                    .limit(PRODUCT_BATCH)
                )
                if after is not None:
                    statement = statement.where(
                        sa.tuple_(
                            RunProduct.category_position, RunProduct.sales_rank, RunProduct.asin
                        )
                        > sa.tuple_(*after)
                    )
                batch = list(await session.scalars(statement))
            for product in batch:
                yield product
            if len(batch) < PRODUCT_BATCH:
                return
            last = batch[-1]
            after = (last.category_position, last.sales_rank, last.asin)

    @asynccontextmanager
    async def _checkpoint_groups(
        self,
        lease: Lease,
        write: Callable[
            [AsyncConnection, list[ItemT], datetime], Awaitable[tuple[list[bool], dict[str, int]]]
        ],
    ) -> AsyncIterator[checkpoints.GroupCommit[ItemT]]:
        """The checkpoints of a phase, written in groups (`checkpoints`) on one connection
        of their own (no pool checkout, ping and reset per group), through Core (no ORM on
        this path).

        Each group is one transaction: `write` marks its units done (unless an earlier
        holder of the lease already did: those get None) and writes their rows, then the
        run's counters are bumped by what it returns, fenced by the lease."""
        async with self.database.engine.connect() as connection:

            async def write_group(items: list[ItemT]) -> list[RunStatus | None]:
                async with connection.begin():
                    marked, increments = await write(connection, items, self.clock())
                    if not any(marked):
                        return [None] * len(items)
                    status = await self.leases.fence(connection, lease, **increments)
                return [status if new else None for new in marked]

            yield checkpoints.GroupCommit(write_group, linger=CHECKPOINT_LINGER_SECONDS)

    async def _fan_out(
        self,
        lease: Lease,
        items: Sequence[ItemT] | AsyncIterator[ItemT],
        call: Callable[[ItemT], Awaitable[ResultT]],
        checkpoint: Callable[[ItemT, ResultT], Awaitable[RunStatus | None]],
        stop: asyncio.Event | None = None,
    ) -> None:
        """For every item, `call` the provider, then `checkpoint` the result.

        At most `run_provider_concurrency` calls are in flight. The checkpoint's database
        write happens outside that limit, so a slow commit does not hold a provider slot;
        at most twice as many items are in progress at once, so memory stays bounded.
        The first failure cancels the rest, so a failed run stops promptly (finished items
        are already checkpointed), and is re-raised as itself, not wrapped in an
        ExceptionGroup.

        A pause or cancel (`stop` set, or a checkpoint that finds the run no longer
        running) is not a failure: no new calls start, the calls in flight finish
        and are checkpointed (they are paid for), then RunInterruptedError is raised, or
        _PauseWithdrawnError when the run is running again by then.

        A provider out of quota is not a failure: no new calls start, the calls in flight
        finish (and are checkpointed), then the QuotaExhaustedError with the latest
        `resume_at` is raised, so the caller can wait and go on from the checkpoints.
        """
        concurrency = self.concurrency
        calls = asyncio.Semaphore(concurrency)
        in_progress = asyncio.Semaphore(2 * concurrency)
        exhausted: list[QuotaExhaustedError] = []
        stop = stop if stop is not None else asyncio.Event()

        def stopping() -> bool:
            return bool(exhausted) or stop.is_set()

        async def handle(item: ItemT) -> None:
            try:
                async with calls:
                    if stopping():  # left for after the wait, or for the resume
                        return
                    try:
                        result = await call(item)
                    except QuotaExhaustedError as exc:
                        exhausted.append(exc)
                        return
                status = await checkpoint(item, result)
                if status is not None and status is not RunStatus.RUNNING:
                    stop.set()
            finally:
                in_progress.release()

        try:
            async with asyncio.TaskGroup() as group:
                if isinstance(items, Sequence):
                    for item in items:
                        await in_progress.acquire()
                        if stopping():
                            break
                        group.create_task(handle(item))
                else:
                    async for item in items:
                        await in_progress.acquire()
                        if stopping():
                            break
                        group.create_task(handle(item))
        except BaseExceptionGroup as group_error:
            raise _most_telling(group_error) from None
        if stop.is_set():
            await self._check_still_ours(lease)  # raises unless the pause was withdrawn
            raise _PauseWithdrawnError(f"run {lease.run_id} is running again")
        if exhausted:
            raise max(exhausted, key=lambda error: error.resume_at)


def _most_telling(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception that explains a failed fan-out: an interruption or lost lease beats a
    provider failure, which beats anything else."""
    leaves: list[BaseException] = []

    def collect(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                collect(inner)
        else:
            leaves.append(error)

    collect(group)
    for kind in ((RunInterruptedError, LeaseLostError), (ProviderFailedError,)):
        for error in leaves:
            if isinstance(error, kind):
                return error
    return leaves[0]
