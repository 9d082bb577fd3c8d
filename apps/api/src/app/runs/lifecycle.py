"""The run lifecycle: create runs and move them from status to status.

Every method works in the caller's session and leaves the commit to the caller (see
`app.runs.commands`), so a change and what follows it commit together.

Lifecycle changes are conditional updates (`... WHERE status IN (allowed)`), so two
requests racing on one run cannot both win.

Pausing or cancelling a run that an instance executes (it holds a live lease) is two steps:
the request sets `pausing` / `cancelling`; the executing instance starts no new provider
call, lets the calls in flight finish and checkpoint (they are paid for), then settles the
run to `paused` / `cancelled` as it gives up the lease (`Leases.release`). A run nobody
executes goes straight to the final status, and one whose executor died while it was on its
way is settled by the sweep once its lease expired (`Leases.settle_abandoned`). `paused` and
`cancelled` runs hold no lease, and every checkpoint is fenced by the lease, so nothing of
such a run changes any more. Resuming a `pausing` run withdraws the pause: it reads
`running` again and its executor goes on (or, if it already stopped, the sweep picks it up).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.categories import invalid_category_id
from app.core.clock import Clock, utcnow
from app.core.config import Settings
from app.core.database import insert_ignoring_conflicts
from app.core.pagination import PageParams, paginate
from app.core.tenancy import org_rows
from app.errors import ConflictError, NotFoundError
from app.runs.leases import CHECKPOINTING, SETTLES_TO, status_literal, timestamp_literal
from app.tables import (
    ACTIVE_RUN_PREDICATE,
    ACTIVE_RUN_STATUSES,
    DEFAULT_FEE_PERCENT,
    QUEUED_RUN_PREDICATE,
    CategoryPreset,
    CollectionRun,
    Organization,
    RunCategory,
    RunPhase,
    RunStatus,
    RunTrigger,
)

logger = logging.getLogger(__name__)

# Which statuses each lifecycle action may start from.
ALLOWED_FROM: dict[str, tuple[RunStatus, ...]] = {
    "start": (RunStatus.PENDING,),
    "pause": (RunStatus.RUNNING,),
    "resume": (RunStatus.PAUSING, RunStatus.PAUSED),
    "cancel": (
        RunStatus.PENDING,
        RunStatus.QUEUED,
        RunStatus.RUNNING,
        RunStatus.PAUSING,
        RunStatus.PAUSED,
    ),
}


class RunNotFoundError(NotFoundError):
    """No run with this id in the organization."""

    def __init__(self, run_id: uuid.UUID) -> None:
        super().__init__(f"run {run_id} not found")
        self.run_id = run_id


class PresetMissingError(NotFoundError):
    """The preset named in a run request does not exist in the organization."""

    def __init__(self, preset_id: uuid.UUID) -> None:
        super().__init__(f"preset {preset_id} not found")
        self.preset_id = preset_id


class PresetUnusableError(ConflictError):
    """The preset's saved categories cannot make a run (saved before today's checks)."""

    def __init__(self, preset_id: uuid.UUID, preset_name: str, problem: str) -> None:
        super().__init__(
            f"the preset {preset_name!r} cannot be run: its {problem}. "
            "Edit the preset's categories and try again."
        )
        self.preset_id = preset_id


class ActiveRunExistsError(ConflictError):
    """The organization already has an active run (pending, running, pausing, paused or
    cancelling)."""

    def __init__(self, active_run_id: uuid.UUID | None, status: RunStatus | None) -> None:
        which = f"run {active_run_id} ({status.value})" if active_run_id and status else "a run"
        super().__init__(
            f"the organization already has an active run: {which}; "
            "wait for it to finish or cancel it first"
        )
        self.active_run_id = active_run_id
        self.status = status


class TransitionNotAllowedError(ConflictError):
    """A lifecycle action is not allowed from the run's current status."""

    def __init__(self, run_id: uuid.UUID, action: str, status: RunStatus) -> None:
        allowed = ", ".join(s.value for s in ALLOWED_FROM[action])
        super().__init__(
            f"cannot {action} a run that is {status.value}; {action} is allowed from: {allowed}"
        )
        self.run_id = run_id
        self.action = action
        self.status = status


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs a list shows: of one preset, with some triggers and statuses (none given:
    all), created in [since, until). A list's cursor continues the list of the same filter."""

    preset_id: uuid.UUID | None = None
    triggers: tuple[RunTrigger, ...] = ()
    statuses: tuple[RunStatus, ...] = ()
    since: datetime | None = None
    until: datetime | None = None

    def apply(self, statement: sa.Select[Any]) -> sa.Select[Any]:
        """`statement` (of runs) narrowed to the runs that match."""
        if self.preset_id is not None:
            statement = statement.where(CollectionRun.preset_id == self.preset_id)
        if self.triggers:
            statement = statement.where(CollectionRun.trigger.in_(self.triggers))
        if self.statuses:
            statement = statement.where(CollectionRun.status.in_(self.statuses))
        if self.since is not None:
            statement = statement.where(CollectionRun.created_at >= self.since)
        if self.until is not None:
            statement = statement.where(CollectionRun.created_at < self.until)
        return statement

    @property
    def narrows(self) -> bool:
        """Whether any run could be left out."""
        return self != RunFilter()


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
    scheduled_for: datetime | None = None
    """A backfill run's due time: queued backfill runs start in this order."""


class RunLifecycle:
    """Creates runs and applies lifecycle actions, in the caller's transaction."""

    def __init__(self, settings: Settings, *, clock: Clock = utcnow) -> None:
        self.settings = settings
        self.clock = clock

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
                raise PresetMissingError(preset_id)
            if problem := invalid_category_id(preset.category_ids):
                raise PresetUnusableError(preset.id, preset.name, problem)
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
        self, session: AsyncSession, specs: Sequence[RunSpec], *, queued: bool = False
    ) -> list[uuid.UUID | None]:
        """Insert runs in one statement; None for each whose organization has an active run.

        The conflict target is the partial unique index on active runs, so checking for an
        active run and creating one are a single atomic step: a manual run and a scheduled
        fire racing each other cannot both start.

        `queued` runs (of a schedule whose fire found a run active) wait to start until it
        ends; None for each whose schedule has a queued run already (the conflict target
        is the partial unique index on queued runs, which leaves backfill runs out: those
        are always created).
        """
        if not specs:
            return []
        now = self.clock()
        run_ids = [uuid.uuid4() for _ in specs]
        # Each run keeps its organization's fee % of now: its margins never change after.
        fee_of = sa.select(Organization.id, Organization.expected_fee_percent).where(
            Organization.id.in_({spec.org_id for spec in specs})
        )
        fee_percents: dict[uuid.UUID, Any] = dict((await session.execute(fee_of)).all())
        rows: list[dict[str, Any]] = [
            {
                "id": run_id,
                "org_id": spec.org_id,
                "name": spec.name,
                "status": RunStatus.QUEUED
                if queued
                else RunStatus.RUNNING
                if spec.start
                else RunStatus.PENDING,
                "phase": RunPhase.AMAZON if spec.start and not queued else None,
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
                "started_at": now if spec.start and not queued else None,
                "scheduled_for": spec.scheduled_for,
                "fee_percent": fee_percents.get(spec.org_id, DEFAULT_FEE_PERCENT),
            }
            for run_id, spec in zip(run_ids, specs, strict=True)
        ]
        created = set(
            await session.scalars(
                insert_ignoring_conflicts(
                    session,
                    CollectionRun,
                    index_elements=["schedule_id"] if queued else ["org_id"],
                    index_where=QUEUED_RUN_PREDICATE if queued else ACTIVE_RUN_PREDICATE,
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
            raise RunNotFoundError(run_id)
        return run

    async def list_runs(
        self,
        session: AsyncSession,
        *,
        org_id: uuid.UUID,
        page: PageParams,
        only: RunFilter | None = None,
    ) -> tuple[list[CollectionRun], str | None]:
        """The organization's runs, newest first; `only` those that match."""
        return await paginate(
            session,
            (only or RunFilter()).apply(org_rows(CollectionRun, org_id)),
            created_at=CollectionRun.created_at,
            row_id=CollectionRun.id,
            params=page,
        )

    async def recent_run_lengths(
        self, session: AsyncSession, *, org_id: uuid.UUID, limit: int = 200
    ) -> list[tuple[uuid.UUID | None, timedelta]]:
        """How long the organization's latest completed runs took (start to finish, pauses
        included), newest first, each with its preset: to estimate how long the next takes."""
        rows = await session.execute(
            org_rows(CollectionRun, org_id)
            .with_only_columns(
                CollectionRun.preset_id, CollectionRun.started_at, CollectionRun.finished_at
            )
            .where(
                CollectionRun.status == RunStatus.COMPLETED,
                CollectionRun.started_at.is_not(None),
                CollectionRun.finished_at.is_not(None),
            )
            .order_by(CollectionRun.finished_at.desc())
            .limit(limit)
        )
        return [
            (preset_id, finished - started)
            for preset_id, started, finished in rows.all()
            if started is not None and finished is not None  # (the query's filter, for mypy)
        ]

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
            raise TransitionNotAllowedError(run_id, action, run.status)
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
            "status": sa.case((executing, status_literal(stopping)), else_=status_literal(final)),
            "lease_owner": sa.case((executing, CollectionRun.lease_owner), else_=sa.null()),
            "lease_expires_at": sa.case(
                (executing, CollectionRun.lease_expires_at), else_=sa.null()
            ),
            # a quota wait shows until the run settles (a withdrawn pause keeps waiting)
            "resumes_at": sa.case((executing, CollectionRun.resumes_at), else_=sa.null()),
            "waiting_for": sa.case((executing, CollectionRun.waiting_for), else_=sa.null()),
        }
        if final is RunStatus.CANCELLED:
            values["finished_at"] = sa.case((executing, sa.null()), else_=timestamp_literal(now))
        return values
