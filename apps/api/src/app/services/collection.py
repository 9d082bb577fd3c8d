"""Collection runs: lifecycle rules, and the two-phase pipeline with its checkpoints.

Lifecycle changes are conditional updates (`... WHERE status IN (allowed)`), so two
requests racing on one run cannot both win. The pipeline writes each unit of work (one
category, then one product) in one short transaction that is also fenced by the run's
lease: a process that lost its lease cannot write, so a resumed run never duplicates or
loses rows.

Pausing or cancelling a run that an instance executes (it holds a live lease) is two steps:
the request sets `pausing` / `cancelling`; the executing instance starts no new provider
call, lets the calls in flight finish and checkpoint (they are paid for), then settles the
run to `paused` / `cancelled` as it gives up the lease (`release`). A run nobody executes
goes straight to the final status, and one whose executor died while it was on its way is
settled by the sweep once its lease expired (`settle_abandoned`). `paused` and `cancelled`
runs hold no lease, and every checkpoint is fenced by the lease, so nothing of such a run
changes any more. Resuming a `pausing` run withdraws the pause: it reads `running` again
and its executor goes on (or, if it already stopped, the sweep picks it up).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.categories import invalid_category_id
from app.config import Settings
from app.database import Database, insert_ignoring_conflicts
from app.pagination import PageParams, paginate
from app.providers.base import AmazonProvider, EbayProvider, Listing, Product, QuotaExhaustedError
from app.providers.resilience import ProviderFailedError
from app.tables import (
    ACTIVE_RUN_PREDICATE,
    ACTIVE_RUN_STATUSES,
    BRAND_LENGTH,
    CategoryPreset,
    CollectionRun,
    RunCategory,
    RunListing,
    RunPhase,
    RunProduct,
    RunSeller,
    RunStatus,
    RunTrigger,
    utcnow,
)
from app.tenancy import org_rows

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

# Which statuses each lifecycle action may start from.
ALLOWED_FROM: dict[str, tuple[RunStatus, ...]] = {
    "start": (RunStatus.PENDING,),
    "pause": (RunStatus.RUNNING,),
    "resume": (RunStatus.PAUSING, RunStatus.PAUSED),
    "cancel": (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.PAUSING, RunStatus.PAUSED),
}
# Statuses in which the executing instance still checkpoints the calls it has in flight.
CHECKPOINTING = (RunStatus.RUNNING, RunStatus.PAUSING, RunStatus.CANCELLING)
# On the way to a final status, and that status.
SETTLES_TO = {RunStatus.PAUSING: RunStatus.PAUSED, RunStatus.CANCELLING: RunStatus.CANCELLED}
PRODUCT_BATCH = 200


class RunNotFoundError(Exception):
    """No run with this id in the organization."""


class PresetMissingError(Exception):
    """The preset named in a run request does not exist in the organization."""


class PresetUnusableError(Exception):
    """The preset's saved categories cannot make a run (saved before today's checks)."""


class ActiveRunExistsError(Exception):
    """The organization already has an active run (pending, running, pausing, paused or
    cancelling)."""

    def __init__(self, active_run_id: uuid.UUID | None, status: RunStatus | None) -> None:
        self.active_run_id = active_run_id
        self.status = status
        which = f"run {active_run_id} ({status.value})" if active_run_id and status else "a run"
        super().__init__(
            f"the organization already has an active run: {which}; "
            "wait for it to finish or cancel it first"
        )


class TransitionNotAllowedError(Exception):
    """A lifecycle action is not allowed from the run's current status."""

    def __init__(self, action: str, status: RunStatus) -> None:
        self.action = action
        self.status = status
        allowed = ", ".join(s.value for s in ALLOWED_FROM[action])
        super().__init__(
            f"cannot {action} a run that is {status.value}; {action} is allowed from: {allowed}"
        )


class _PauseWithdrawnError(Exception):
    """A run asked to stop is running again (resumed while pausing): go on from here."""


class LeaseLostError(Exception):
    """This instance no longer holds the run's lease (another instance took it over)."""


class RunInterruptedError(Exception):
    """The run is pausing, paused, cancelling or cancelled: its execution stops here."""

    def __init__(self, status: RunStatus) -> None:
        super().__init__(f"run is {status.value}")
        self.status = status


@dataclass(frozen=True, slots=True)
class RunSpec:
    """What a new run collects, and for whom."""

    org_id: uuid.UUID
    name: str
    category_ids: Sequence[str]
    created_by: uuid.UUID | None
    trigger: RunTrigger = RunTrigger.MANUAL
    schedule_id: uuid.UUID | None = None
    preset_id: uuid.UUID | None = None
    products_per_category: int | None = None
    listings_per_product: int | None = None
    start: bool = False


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof that this instance executes a run: checked by every checkpoint write."""

    run_id: uuid.UUID
    owner: str


class CollectionService:
    """Creates runs, moves them through their lifecycle, and executes their pipeline."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        *,
        amazon: AmazonProvider,
        ebay: EbayProvider,
        clock: Clock = utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.database = database
        self.settings = settings
        self.amazon = amazon
        self.ebay = ebay
        self.clock = clock
        self.sleep = sleep
        # While a run waits for provider quota: how often it checks for pause or cancel.
        self.quota_check_seconds = settings.run_quota_check_seconds

    # --- lifecycle ----------------------------------------------------------------------

    async def create_run(
        self,
        session: AsyncSession,
        *,
        org_id: uuid.UUID,
        created_by: uuid.UUID | None,
        category_ids: Sequence[str] | None = None,
        preset_id: uuid.UUID | None = None,
        name: str | None = None,
        products_per_category: int | None = None,
        listings_per_product: int | None = None,
    ) -> CollectionRun:
        """Create a pending run of a preset's categories (or of the given ones).

        Raises ActiveRunExistsError, naming the active run, when the organization has one.
        """
        now = self.clock()
        if preset_id is not None:
            preset = await session.scalar(
                org_rows(CategoryPreset, org_id).where(CategoryPreset.id == preset_id)
            )
            if preset is None:
                raise PresetMissingError(f"preset {preset_id} not found")
            if problem := invalid_category_id(preset.category_ids):
                raise PresetUnusableError(
                    f"the preset {preset.name!r} cannot be run: its {problem}. "
                    "Edit the preset's categories and try again."
                )
            category_ids = preset.category_ids
            name = name or f"{preset.name} {now:%Y-%m-%d %H:%M} UTC"
        if not category_ids:
            raise ValueError("a run needs at least one category")
        spec = RunSpec(
            org_id=org_id,
            name=name or f"Run {now:%Y-%m-%d %H:%M} UTC",
            category_ids=list(category_ids),
            created_by=created_by,
            preset_id=preset_id,
            products_per_category=products_per_category,
            listings_per_product=listings_per_product,
        )
        (run_id,) = await self.create_runs(session, [spec])
        if run_id is None:
            active = await self.active_run(session, org_id=org_id)
            raise ActiveRunExistsError(
                active.id if active else None, active.status if active else None
            )
        return await session.get_one(CollectionRun, run_id)

    async def create_runs(
        self, session: AsyncSession, specs: Sequence[RunSpec]
    ) -> list[uuid.UUID | None]:
        """Insert runs in one statement; None for each whose organization has an active run.

        The conflict target is the partial unique index on active runs, so checking for an
        active run and creating one are a single atomic step: a manual run and a scheduled
        fire racing each other cannot both start.
        """
        if not specs:
            return []
        now = self.clock()
        run_ids = [uuid.uuid4() for _ in specs]
        rows: list[dict[str, Any]] = [
            {
                "id": run_id,
                "org_id": spec.org_id,
                "name": spec.name,
                "status": RunStatus.RUNNING if spec.start else RunStatus.PENDING,
                "phase": RunPhase.AMAZON if spec.start else None,
                "trigger": spec.trigger,
                "schedule_id": spec.schedule_id,
                "preset_id": spec.preset_id,
                "category_ids": list(spec.category_ids),
                "categories_total": len(spec.category_ids),
                "products_per_category": spec.products_per_category
                or self.settings.run_products_per_category,
                "listings_per_product": spec.listings_per_product
                or self.settings.run_listings_per_product,
                "created_by": spec.created_by,
                "created_at": now,
                "updated_at": now,
                "started_at": now if spec.start else None,
            }
            for run_id, spec in zip(run_ids, specs, strict=True)
        ]
        created = set(
            await session.scalars(
                insert_ignoring_conflicts(
                    session,
                    CollectionRun,
                    index_elements=["org_id"],
                    index_where=ACTIVE_RUN_PREDICATE,
                ).returning(CollectionRun.id),
                rows,
            )
        )
        categories = [
            {"run_id": run_id, "position": position, "category_id": category_id}
            for run_id, spec in zip(run_ids, specs, strict=True)
            if run_id in created
            for position, category_id in enumerate(spec.category_ids)
        ]
        if categories:
            await session.execute(sa.insert(RunCategory), categories)
        return [run_id if run_id in created else None for run_id in run_ids]

    async def active_run(self, session: AsyncSession, *, org_id: uuid.UUID) -> CollectionRun | None:
        """The organization's active run (pending to paused), if any."""
        result: CollectionRun | None = await session.scalar(
            org_rows(CollectionRun, org_id).where(CollectionRun.status.in_(ACTIVE_RUN_STATUSES))
        )
        return result

    async def get_run(
        self, session: AsyncSession, *, org_id: uuid.UUID, run_id: uuid.UUID
    ) -> CollectionRun:
        """One run of the organization; another organization's run is not found."""
        run: CollectionRun | None = await session.scalar(
            org_rows(CollectionRun, org_id)
            .where(CollectionRun.id == run_id)
            .execution_options(populate_existing=True)
        )
        if run is None:
            raise RunNotFoundError(f"run {run_id} not found")
        return run

    async def list_runs(
        self,
        session: AsyncSession,
        *,
        org_id: uuid.UUID,
        page: PageParams,
        statuses: Sequence[RunStatus] = (),
    ) -> tuple[list[CollectionRun], str | None]:
        """The organization's runs, newest first, optionally only those in `statuses`."""
        statement = org_rows(CollectionRun, org_id)
        if statuses:
            statement = statement.where(CollectionRun.status.in_(statuses))
        return await paginate(
            session,
            statement,
            created_at=CollectionRun.created_at,
            row_id=CollectionRun.id,
            params=page,
        )

    async def _transition(
        self,
        session: AsyncSession,
        *,
        org_id: uuid.UUID,
        run_id: uuid.UUID,
        action: str,
        values: dict[str, Any],
    ) -> CollectionRun:
        """Apply `values` if the run's status allows `action`; else say why not."""
        result = await session.execute(
            sa.update(CollectionRun)
            .where(
                CollectionRun.org_id == org_id,
                CollectionRun.id == run_id,
                CollectionRun.status.in_(ALLOWED_FROM[action]),
            )
            .values(**values, updated_at=self.clock())
            .execution_options(synchronize_session=False)
        )
        run = await self.get_run(session, org_id=org_id, run_id=run_id)
        if result.rowcount == 0:  # type: ignore[attr-defined]  # CursorResult of an UPDATE
            raise TransitionNotAllowedError(action, run.status)
        logger.info(
            "run %s: %s -> %s", run_id, action, run.status.value, extra={"run_id": str(run_id)}
        )
        return run

    async def start_run(
        self, session: AsyncSession, *, org_id: uuid.UUID, run_id: uuid.UUID
    ) -> CollectionRun:
        """pending → running; the executor picks it up once the caller commits."""
        now = self.clock()
        return await self._transition(
            session,
            org_id=org_id,
            run_id=run_id,
            action="start",
            values={"status": RunStatus.RUNNING, "phase": RunPhase.AMAZON, "started_at": now},
        )

    async def pause_run(
        self, session: AsyncSession, *, org_id: uuid.UUID, run_id: uuid.UUID
    ) -> CollectionRun:
        """running → pausing while an instance executes it (paused once its calls in flight
        are checkpointed), else running → paused at once."""
        return await self._transition(
            session,
            org_id=org_id,
            run_id=run_id,
            action="pause",
            values=self._stop_values(RunStatus.PAUSING),
        )

    async def resume_run(
        self, session: AsyncSession, *, org_id: uuid.UUID, run_id: uuid.UUID
    ) -> CollectionRun:
        """paused → running, from the last checkpoint; pausing → running withdraws the pause."""
        return await self._transition(
            session,
            org_id=org_id,
            run_id=run_id,
            action="resume",
            values={"status": RunStatus.RUNNING},
        )

    async def cancel_run(
        self, session: AsyncSession, *, org_id: uuid.UUID, run_id: uuid.UUID
    ) -> CollectionRun:
        """running/pausing → cancelling while an instance executes it (cancelled once its
        calls in flight are checkpointed), else → cancelled at once; results so far stay."""
        return await self._transition(
            session,
            org_id=org_id,
            run_id=run_id,
            action="cancel",
            values=self._stop_values(RunStatus.CANCELLING),
        )

    def _stop_values(self, stopping: RunStatus) -> dict[str, Any]:
        """The columns of a pause or cancel: `stopping` (pausing or cancelling) while an
        instance holds a live lease, which it gives up when its calls in flight are
        checkpointed; otherwise the final status at once, and no lease."""
        now = self.clock()
        executing = sa.and_(
            CollectionRun.lease_owner.is_not(None),
            CollectionRun.lease_expires_at >= now,
            CollectionRun.status.in_(CHECKPOINTING),
        )
        final = SETTLES_TO[stopping]
        values: dict[str, Any] = {
            "status": sa.case((executing, _status(stopping)), else_=_status(final)),
            "lease_owner": sa.case((executing, CollectionRun.lease_owner), else_=sa.null()),
            "lease_expires_at": sa.case(
                (executing, CollectionRun.lease_expires_at), else_=sa.null()
            ),
            # a quota wait shows until the run settles (a withdrawn pause keeps waiting)
            "resumes_at": sa.case((executing, CollectionRun.resumes_at), else_=sa.null()),
            "waiting_for": sa.case((executing, CollectionRun.waiting_for), else_=sa.null()),
        }
        if final is RunStatus.CANCELLED:
            values["finished_at"] = sa.case((executing, sa.null()), else_=_timestamp(now))
        return values

    # --- leases ---------------------------------------------------------------------------

    async def claim(self, run_id: uuid.UUID, *, owner: str) -> Lease | None:
        """Take the lease of a running run that nobody holds (or whose holder died)."""
        now = self.clock()
        async with self.database.transaction() as session:
            result = await session.execute(
                sa.update(CollectionRun)
                .where(
                    CollectionRun.id == run_id,
                    CollectionRun.status == RunStatus.RUNNING,
                    sa.or_(
                        CollectionRun.lease_owner.is_(None),
                        CollectionRun.lease_owner == owner,
                        CollectionRun.lease_expires_at < now,
                    ),
                )
                .values(lease_owner=owner, lease_expires_at=self._lease_expiry(now))
            )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None
        return Lease(run_id, owner)

    async def renew(
        self, run_ids: Sequence[uuid.UUID], *, owner: str
    ) -> dict[uuid.UUID, RunStatus]:
        """Extend this instance's leases; return the status of each run still held."""
        if not run_ids:
            return {}
        now = self.clock()
        async with self.database.transaction() as session:
            rows = await session.execute(
                sa.update(CollectionRun)
                .where(CollectionRun.id.in_(run_ids), CollectionRun.lease_owner == owner)
                .values(lease_expires_at=self._lease_expiry(now))
                .returning(CollectionRun.id, CollectionRun.status)
            )
            return dict(rows.all())

    async def release(self, lease: Lease) -> RunStatus | None:
        """Give up a lease (on shutdown, or once the calls in flight are checkpointed) so any
        instance may continue the run; a `pausing` or `cancelling` run settles to `paused` or
        `cancelled` in the same write. Its status then, or None if the lease was not ours."""
        async with self.database.transaction() as session:
            status = await session.scalar(
                sa.update(CollectionRun)
                .where(CollectionRun.id == lease.run_id, CollectionRun.lease_owner == lease.owner)
                .values(**self._settle_values())
                .returning(CollectionRun.status)
                .execution_options(synchronize_session=False)
            )
        return RunStatus(status) if status is not None else None

    async def settle_abandoned(self) -> list[tuple[uuid.UUID, RunStatus]]:
        """Settle `pausing` / `cancelling` runs that nobody executes any more (no lease, or
        an expired one: their instance died), so nothing of theirs is in flight. The runs
        settled, with their final status."""
        now = self.clock()
        statement = (
            sa.update(CollectionRun)
            .where(
                CollectionRun.status.in_(tuple(SETTLES_TO)),
                sa.or_(
                    CollectionRun.lease_owner.is_(None),
                    CollectionRun.lease_expires_at < now,
                ),
            )
            .values(**self._settle_values())
            .returning(CollectionRun.id, CollectionRun.status)
            .execution_options(synchronize_session=False)
        )
        async with self.database.transaction() as session:
            rows = (await session.execute(statement)).all()
        settled = [(run_id, RunStatus(status)) for run_id, status in rows]
        for run_id, status in settled:
            logger.info(
                "run %s: %s (its executor is gone)",
                run_id,
                status.value,
                extra={"run_id": str(run_id)},
            )
        return settled

    def _settle_values(self) -> dict[str, Any]:
        """No lease; `pausing` and `cancelling` become `paused` and `cancelled`."""
        now = self.clock()
        stopping = CollectionRun.status.in_(tuple(SETTLES_TO))
        return {
            "status": sa.case(
                *((CollectionRun.status == _status(s), _status(f)) for s, f in SETTLES_TO.items()),
                else_=CollectionRun.status,
            ),
            "finished_at": sa.case(
                (CollectionRun.status == _status(RunStatus.CANCELLING), _timestamp(now)),
                else_=CollectionRun.finished_at,
            ),
            "resumes_at": sa.case((stopping, sa.null()), else_=CollectionRun.resumes_at),
            "waiting_for": sa.case((stopping, sa.null()), else_=CollectionRun.waiting_for),
            "lease_owner": None,
            "lease_expires_at": None,
            "updated_at": sa.case((stopping, _timestamp(now)), else_=CollectionRun.updated_at),
        }

    async def orphaned_runs(
        self, *, owner: str, limit: int, exclude: Sequence[uuid.UUID] = ()
    ) -> list[uuid.UUID]:
        """Running runs nobody executes: no lease, an expired one, or one this instance
        held before it restarted (a stable INSTANCE_ID); oldest first, except `exclude`
        (what the caller executes already or leaves alone for now)."""
        now = self.clock()
        query = (
            sa.select(CollectionRun.id)
            .where(
                CollectionRun.status == RunStatus.RUNNING,
                sa.or_(
                    CollectionRun.lease_owner.is_(None),
                    CollectionRun.lease_owner == owner,
                    CollectionRun.lease_expires_at < now,
                ),
            )
            .order_by(CollectionRun.started_at, CollectionRun.id)
            .limit(limit)
        )
        if exclude:
            query = query.where(CollectionRun.id.not_in(exclude))
        async with self.database.read() as session:
            return list(await session.scalars(query))

    def _lease_expiry(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.settings.run_lease_seconds)

    async def _fence(self, session: AsyncSession, lease: Lease, **increments: int) -> RunStatus:
        """Bump the run's counters if this instance still holds its lease; return its status.

        Every checkpoint calls this inside its transaction: when the lease is gone the
        whole checkpoint rolls back.
        """
        values: dict[str, Any] = {
            name: getattr(CollectionRun, name) + amount for name, amount in increments.items()
        }
        status = await session.scalar(
            sa.update(CollectionRun)
            .where(
                CollectionRun.id == lease.run_id,
                CollectionRun.lease_owner == lease.owner,
                CollectionRun.status.in_(CHECKPOINTING),
            )
            .values(**values, updated_at=self.clock())
            .returning(CollectionRun.status)
            .execution_options(synchronize_session=False)
        )
        if status is None:
            raise LeaseLostError(f"lease of run {lease.run_id} lost")
        return RunStatus(status)

    # --- pipeline -------------------------------------------------------------------------

    async def execute(self, lease: Lease, stop: asyncio.Event | None = None) -> RunStatus:
        """Run (or resume) the pipeline from its checkpoints; return the final status.

        Raises RunInterruptedError when the run is pausing or cancelling (once the provider
        calls in flight are checkpointed) or was paused or cancelled, LeaseLostError when
        another instance took over. `stop`, set by the executor when it sees a pause or
        cancel request, makes it start no new provider calls; checkpoints notice one too.
        A provider failing for good fails the run with its message; a provider out of quota
        makes it wait (see `_wait_for_quota`) and go on from its checkpoint.
        """
        stop = stop if stop is not None else asyncio.Event()
        async with self.database.read() as session:
            run = await session.get_one(CollectionRun, lease.run_id)
        log = {"run_id": str(run.id)}
        phase = run.phase
        try:
            if run.resumes_at is not None:  # taken over while it waited for quota
                await self._wait_for_quota(
                    lease, run.resumes_at, run.waiting_for or "provider quota", stop
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
                    await self._wait_for_quota(lease, exc.resume_at, exc.limit or str(exc), stop)
                except _PauseWithdrawnError:
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
        now = self.clock()
        async with self.database.transaction() as session:
            values: dict[str, Any] = {
                "status": status,
                "finished_at": now,
                "error": error,
                "lease_owner": None,
                "lease_expires_at": None,
                "resumes_at": None,
                "updated_at": now,
            }
            if status is RunStatus.COMPLETED:
                values["phase"] = RunPhase.DONE
            final = await session.scalar(
                sa.update(CollectionRun)
                .where(
                    CollectionRun.id == lease.run_id,
                    CollectionRun.lease_owner == lease.owner,
                    CollectionRun.status == RunStatus.RUNNING,
                )
                .values(**values)
                .returning(CollectionRun.status)
            )
            if final is None:  # paused or cancelled meanwhile, or taken over
                current = await session.scalar(
                    sa.select(CollectionRun.status).where(CollectionRun.id == lease.run_id)
                )
                raise RunInterruptedError(RunStatus(current or RunStatus.CANCELLED))
        return status

    async def _wait_for_quota(
        self, lease: Lease, resume_at: datetime, limit: str, stop: asyncio.Event
    ) -> None:
        """Wait until `resume_at` for a provider's quota, shown meanwhile as `resumes_at`
        and `waiting_for` (`limit`: which limit it waits for).

        No work is in flight while waiting (the fan-out stopped at its checkpoints). The run
        is checked every `quota_check_seconds`, and at once when `stop` is set, so a pause
        or cancel made on any instance ends the wait promptly (RunInterruptedError), as does
        a takeover (LeaseLostError); the executor's heartbeat keeps the lease meanwhile. If
        this instance stops, the run keeps `resumes_at` and whoever takes it over waits out
        the rest.
        """
        log = {"run_id": str(lease.run_id), "resumes_at": resume_at.isoformat()}
        limit = _text(limit, WAITING_FOR_LENGTH)
        logger.info("run %s waits until %s for %s", lease.run_id, resume_at, limit, extra=log)
        await self._set_resumes_at(lease, resume_at, limit)
        while (remaining := (resume_at - self.clock()).total_seconds()) > 0:
            await self._sleep_unless(stop, min(remaining, self.quota_check_seconds))
            await self._check_still_ours(lease)
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
        """Phase 1: each category's best sellers, one checkpoint per category."""
        async with self.database.read() as session:
            pending = list(
                await session.scalars(
                    sa.select(RunCategory)
                    .where(RunCategory.run_id == run.id, RunCategory.done_at.is_(None))
                    .order_by(RunCategory.position)
                )
            )

        async def collect(category: RunCategory) -> list[Product]:
            return await self.amazon.best_sellers(category.category_id, run.products_per_category)

        await self._fan_out(
            lease, pending, collect, partial(self._checkpoint_category, lease), stop
        )
        async with self.database.transaction() as session:
            await session.execute(
                sa.update(CollectionRun)
                .where(CollectionRun.id == run.id, CollectionRun.lease_owner == lease.owner)
                .values(phase=RunPhase.EBAY)
                .execution_options(synchronize_session=False)
            )

    async def _checkpoint_category(
        self, lease: Lease, category: RunCategory, products: list[Product]
    ) -> RunStatus | None:
        async with self.database.transaction() as session:
            marked = await session.execute(
                sa.update(RunCategory)
                .where(
                    RunCategory.run_id == category.run_id,
                    RunCategory.position == category.position,
                    RunCategory.done_at.is_(None),
                )
                .values(done_at=self.clock(), products_found=len(products))
                .execution_options(synchronize_session=False)
            )
            if marked.rowcount == 0:  # type: ignore[attr-defined]
                return None  # already checkpointed (by an earlier owner of the lease)
            inserted = 0
            if products:
                result = await session.execute(
                    insert_ignoring_conflicts(
                        session, RunProduct, index_elements=["run_id", "asin"]
                    ).returning(RunProduct.asin),
                    # in key order: concurrent checkpoints of categories that share
                    # products then lock those rows in one order and cannot deadlock
                    [_product_row(category, p) for p in sorted(products, key=_asin)],
                )
                inserted = len(result.all())
            return await self._fence(session, lease, categories_done=1, products_found=inserted)

    async def run_ebay_seller_search(
        self, lease: Lease, run: CollectionRun, stop: asyncio.Event | None = None
    ) -> None:
        """Phase 2: eBay listings of every collected product, one checkpoint per product."""

        async def search(product: RunProduct) -> list[Listing]:
            return await self.ebay.search(_as_product(product), run.listings_per_product)

        await self._fan_out(
            lease,
            self._unsearched_products(run.id),
            search,
            partial(self._checkpoint_product, lease),
            stop,
        )

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

    async def _checkpoint_product(
        self, lease: Lease, product: RunProduct, listings: list[Listing]
    ) -> RunStatus | None:
        unique = list({listing.item_id: listing for listing in listings}.values())
        async with self.database.transaction() as session:
            marked = await session.execute(
                sa.update(RunProduct)
                .where(
                    RunProduct.run_id == product.run_id,
                    RunProduct.asin == product.asin,
                    RunProduct.searched_at.is_(None),
                )
                .values(searched_at=self.clock(), listings_found=len(unique))
                .execution_options(synchronize_session=False)
            )
            if marked.rowcount == 0:  # type: ignore[attr-defined]
                return None
            new_listings = new_sellers = 0
            if unique:
                result = await session.execute(
                    insert_ignoring_conflicts(
                        session, RunListing, index_elements=["run_id", "asin", "item_id"]
                    ).returning(RunListing.item_id),
                    [_listing_row(product, listing) for listing in unique],
                )
                new_listings = len(result.all())
                sellers = sorted({listing.seller_username for listing in unique})
                result = await session.execute(
                    insert_ignoring_conflicts(
                        session, RunSeller, index_elements=["run_id", "username"]
                    ).returning(RunSeller.username),
                    [{"run_id": product.run_id, "username": name} for name in sellers],
                )
                new_sellers = len(result.all())
            return await self._fence(
                session,
                lease,
                products_searched=1,
                listings_found=new_listings,
                sellers_found=new_sellers,
            )

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
        concurrency = self.settings.run_provider_concurrency
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


WAITING_FOR_LENGTH = 300  # collection_runs.waiting_for

# What the columns hold. Marketplace data is not trusted to fit: free text is shortened and
# a number out of range is stored as unknown, instead of the database refusing the row.
INT4_MAX = 2**31 - 1
PRICE_LIMIT = Decimal(10) ** 10  # Numeric(12, 2)
CENT = Decimal("0.01")


def _asin(product: Product) -> str:
    return product.asin


def _text(value: str, length: int) -> str:
    return value if len(value) <= length else value[: length - 1] + "…"


def _price(value: Decimal | None) -> Decimal | None:
    if value is None or not value.is_finite() or not -PRICE_LIMIT < value < PRICE_LIMIT:
        return None
    return value.quantize(CENT)


def _percentage(value: Decimal | None) -> Decimal | None:
    if value is None or not value.is_finite() or not 0 <= value <= 100:
        return None
    return value.quantize(CENT)


def _count(value: int | None) -> int | None:
    return value if value is not None and 0 <= value <= INT4_MAX else None


def _product_row(category: RunCategory, product: Product) -> dict[str, Any]:
    return {
        "run_id": category.run_id,
        "asin": product.asin,
        "category_id": category.category_id,
        "category_position": category.position,
        "sales_rank": min(max(product.sales_rank, 0), INT4_MAX),
        "title": product.title,
        "brand": _text(product.brand, BRAND_LENGTH) if product.brand is not None else None,
        "price": _price(product.price),
        "currency": product.currency[:3],
        "upcs": list(product.upcs),
        "eans": list(product.eans),
    }


def _as_product(row: RunProduct) -> Product:
    return Product(
        asin=row.asin,
        title=row.title,
        category_id=row.category_id,
        sales_rank=row.sales_rank,
        brand=row.brand,
        price=row.price,
        currency=row.currency,
        upcs=tuple(row.upcs),
        eans=tuple(row.eans),
    )


def _listing_row(product: RunProduct, listing: Listing) -> dict[str, Any]:
    return {
        "run_id": product.run_id,
        "asin": product.asin,
        "item_id": listing.item_id,
        "title": listing.title,
        "price": _price(listing.price),
        "currency": listing.currency[:3],
        "seller_username": listing.seller_username,
        "seller_feedback_score": _count(listing.seller_feedback_score),
        "seller_feedback_percentage": _percentage(listing.seller_feedback_percentage),
        "url": listing.url,
    }


def _status(status: RunStatus) -> sa.BindParameter[RunStatus]:
    return sa.literal(status, CollectionRun.status.type)


def _timestamp(moment: datetime) -> sa.BindParameter[datetime]:
    return sa.literal(moment, CollectionRun.updated_at.type)
