"""Leases: which instance executes a running run, and the fence every checkpoint passes.

A lease is a row's `lease_owner` and `lease_expires_at`. An instance claims the lease of a
running run nobody holds (or whose holder died: the lease expired), renews it by heartbeat
and releases it when it stops. Every checkpoint write is fenced by the lease (`fence`): a
process that lost its lease cannot write, so a resumed run never duplicates or loses rows.

Each method here opens its own short transaction, except `fence`, which runs inside the
checkpoint's.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import aliased

from app.core.clock import Clock, utcnow
from app.core.config import Settings
from app.core.database import Database
from app.tables import ACTIVE_RUN_STATUSES, CollectionRun, RunPhase, RunStatus, RunTrigger

logger = logging.getLogger(__name__)

# Statuses in which the executing instance still checkpoints the calls it has in flight.
CHECKPOINTING = (RunStatus.RUNNING, RunStatus.PAUSING, RunStatus.CANCELLING)
ENDED = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)
# On the way to a final status, and that status.
SETTLES_TO = {RunStatus.PAUSING: RunStatus.PAUSED, RunStatus.CANCELLING: RunStatus.CANCELLED}


ACTIVE = aliased(CollectionRun, name="active")


class LeaseLostError(Exception):
    """This instance no longer holds the run's lease (another instance took it over)."""


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof that this instance executes a run: checked by every checkpoint write."""

    run_id: uuid.UUID
    owner: str


class Leases:
    """Claims, renews and releases run leases, and fences checkpoints with them."""

    def __init__(self, database: Database, settings: Settings, *, clock: Clock = utcnow) -> None:
        self.database = database
        self.lease_seconds = settings.run_lease_seconds
        self.clock = clock

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

    async def ended(self, run_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Those of `run_ids` that have ended (completed, failed or cancelled)."""
        async with self.database.read() as session:
            ended = await session.scalars(
                sa.select(CollectionRun.id).where(
                    CollectionRun.id.in_(run_ids), CollectionRun.status.in_(ENDED)
                )
            )
            return set(ended)

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

    async def start_queued(self) -> list[uuid.UUID]:
        """Start the first queued run of every organization that has no active run any more
        (its schedule's fire found one active: overlap policy buffer_one or cancel_other; or
        a backfill queued it). First come the schedules' own queued runs, oldest first, then
        backfill runs by their due time (`scheduled_for`): one active run per organization,
        so a backfill's runs run one after another, in due-time order.

        Each start is one conditional update, and the one-active-run index refuses a second
        active run, so a queued run starts exactly once whichever replicas sweep at the same
        time; it then reads `running` without a lease, and the sweep executes it like any
        run nobody executes. Queued runs are rows: they survive restarts and replica loss.
        """
        now = self.clock()
        active = sa.exists().where(
            ACTIVE.org_id == CollectionRun.org_id, ACTIVE.status.in_(ACTIVE_RUN_STATUSES)
        )
        backfill = sa.case((CollectionRun.trigger == RunTrigger.BACKFILL, 1), else_=0)
        place = (
            sa.func.row_number()
            .over(
                partition_by=CollectionRun.org_id,
                order_by=(
                    backfill,
                    CollectionRun.scheduled_for,
                    CollectionRun.created_at,
                    CollectionRun.id,
                ),
            )
            .label("place")
        )
        queue = (
            sa.select(CollectionRun.id, place)
            .where(CollectionRun.status == RunStatus.QUEUED, ~active)
            .subquery()
        )
        # each organization's first queued run only (a backfill may queue a hundred)
        candidates = sa.select(queue.c.id).where(queue.c.place == 1)
        started: list[uuid.UUID] = []
        async with self.database.transaction() as session:
            for run_id in (await session.scalars(candidates)).all():
                try:
                    async with session.begin_nested():
                        result = await session.execute(
                            sa.update(CollectionRun)
                            .where(
                                CollectionRun.id == run_id,
                                CollectionRun.status == RunStatus.QUEUED,
                            )
                            .values(
                                status=RunStatus.RUNNING,
                                phase=RunPhase.AMAZON,
                                started_at=now,
                                updated_at=now,
                            )
                            .execution_options(synchronize_session=False)
                        )
                except IntegrityError:  # a run of the organization became active meanwhile
                    continue
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    started.append(run_id)
        for run_id in started:
            logger.info("run %s: started (was queued)", run_id, extra={"run_id": str(run_id)})
        return started

    def _settle_values(self) -> dict[str, Any]:
        """No lease; `pausing` and `cancelling` become `paused` and `cancelled`."""
        now = self.clock()
        stopping = CollectionRun.status.in_(tuple(SETTLES_TO))
        return {
            "status": sa.case(
                *(
                    (CollectionRun.status == status_literal(s), status_literal(f))
                    for s, f in SETTLES_TO.items()
                ),
                else_=CollectionRun.status,
            ),
            "finished_at": sa.case(
                (
                    CollectionRun.status == status_literal(RunStatus.CANCELLING),
                    timestamp_literal(now),
                ),
                else_=CollectionRun.finished_at,
            ),
            "resumes_at": sa.case((stopping, sa.null()), else_=CollectionRun.resumes_at),
            "waiting_for": sa.case((stopping, sa.null()), else_=CollectionRun.waiting_for),
            "lease_owner": None,
            "lease_expires_at": None,
            "updated_at": sa.case(
                (stopping, timestamp_literal(now)), else_=CollectionRun.updated_at
            ),
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
        return now + timedelta(seconds=self.lease_seconds)

    async def fence(
        self, session: AsyncSession | AsyncConnection, lease: Lease, **increments: int
    ) -> RunStatus:
        """Bump the run's counters if this instance still holds its lease; return its status.

        Every checkpoint calls this inside its transaction: when the lease is gone the
        whole checkpoint rolls back.
        """
        status = await session.scalar(
            _fence_statement(tuple(increments)),
            {
                "fenced_run": lease.run_id,
                "fenced_owner": lease.owner,
                "fenced_at": self.clock(),
                **{f"add_{name}": amount for name, amount in increments.items()},
            },
        )
        if status is None:
            raise LeaseLostError(f"lease of run {lease.run_id} lost")
        return RunStatus(status)


@cache
def _fence_statement(counters: tuple[str, ...]) -> sa.Update:
    """The fence's UPDATE, built once per set of counters (it runs at every checkpoint)."""
    runs = CollectionRun.metadata.tables[CollectionRun.__tablename__]
    run = runs.c
    return (
        sa.update(runs)
        .where(
            run.id == sa.bindparam("fenced_run"),
            run.lease_owner == sa.bindparam("fenced_owner"),
            run.status.in_(CHECKPOINTING),
        )
        .values(
            {
                **{
                    name: run[name] + sa.bindparam(f"add_{name}", type_=sa.Integer)
                    for name in counters
                },
                "updated_at": sa.bindparam("fenced_at", type_=run.updated_at.type),
            }
        )
        .returning(run.status)
    )


def status_literal(status: RunStatus) -> sa.BindParameter[RunStatus]:
    """`status` as a bound value of the status column's type (for CASE expressions)."""
    return sa.literal(status, CollectionRun.status.type)


def timestamp_literal(moment: datetime) -> sa.BindParameter[datetime]:
    """`moment` as a bound value of the timestamp columns' type (for CASE expressions)."""
    return sa.literal(moment, CollectionRun.updated_at.type)
