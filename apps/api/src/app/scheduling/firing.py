"""Writing the fires of due schedules, a batch in a few statements: the due schedules one
transaction claims, their runs, their fire-log rows and their schedules' next due times.

Per batch, whatever its size: one query claims the due schedules (on PostgreSQL `FOR UPDATE
SKIP LOCKED`, so replicas take different ones), one INSERT creates the runs (its conflict
target, the "one active run per organization" index, makes the skip rule atomic), one
INSERT logs the fires with their outcomes, and one UPDATE per distinct set of new values
advances the schedules (a burst's share a handful). All in the caller's transaction: a
crash mid-batch leaves nothing of it, and the next pass fires the same due times again.

The fire log's unique key (schedule, due time, backfill) stays the guarantee of exactly
once: the INSERT skips a fire whose key is taken, and then `FireTakenError` rolls the whole
batch back (its runs too), for the caller to do it again leaving out the fires already in
the log (`taken_fires`). Claimed schedule rows make that rare: only a run by hand at the
very microsecond of a due time, or a row left from an older version, can take a key first.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Sequence, Set
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.core.database import insert_ignoring_conflicts
from app.runs.lifecycle import RunLifecycle, TransitionNotAllowedError
from app.scheduling.fires import (
    DUE_COLUMNS,
    ENABLED,
    DueSchedule,
    FirePlan,
    FireResult,
    run_spec,
    schedule_changes,
)
from app.tables import (
    ACTIVE_RUN_STATUSES,
    CategoryPreset,
    CollectionRun,
    CollectionSchedule,
    FireOutcome,
    OverlapPolicy,
    ScheduleFire,
)

logger = logging.getLogger(__name__)

FireKey = tuple[uuid.UUID, datetime]
"""A schedule and a due time: the fire log's unique key, besides `backfill`."""


class FireTakenError(Exception):
    """The fire log holds a fire of one of the batch's due times already."""

    def __init__(self, keys: Sequence[FireKey]) -> None:
        super().__init__(
            f"the fire log holds {len(keys)} of these due times already "
            f"(schedule {keys[0][0]} due {keys[0][1].isoformat()}, ...)"
        )
        self.keys = list(keys)


def among(
    column: sa.ColumnElement[uuid.UUID] | InstrumentedAttribute[uuid.UUID],
    ids: Collection[uuid.UUID],
    session: AsyncSession,
) -> sa.ColumnElement[bool]:
    """`column IN ids`; on PostgreSQL `column = ANY(:ids)`, one array parameter, so that a
    batch's statement is the same whatever its size (asyncpg prepares each new text, and
    `IN` has a parameter per id)."""
    if session.get_bind().dialect.name == "postgresql":
        return column == sa.any_(sa.literal(list(ids), postgresql.ARRAY(sa.Uuid)))
    return column.in_(ids)


def due_query(now: datetime, limit: int, dialect: str) -> sa.Select[Any]:
    """The enabled schedules due at `now` (oldest due first, at most `limit`), with their
    presets; on PostgreSQL locked for this transaction, skipping those another one holds."""
    statement: sa.Select[Any] = (
        sa.select(*DUE_COLUMNS)
        .select_from(CollectionSchedule)
        .outerjoin(CategoryPreset, CategoryPreset.id == CollectionSchedule.preset_id)
        .where(ENABLED, CollectionSchedule.next_run_at <= now)
        .order_by(CollectionSchedule.next_run_at)
        .limit(limit)
    )
    if dialect == "postgresql":
        statement = statement.with_for_update(of=CollectionSchedule, skip_locked=True)
    return statement


async def claim_due(
    session: AsyncSession, now: datetime, limit: int, dialect: str
) -> list[DueSchedule]:
    """Read (and on PostgreSQL lock) the schedules due at `now`, up to `limit`."""
    rows = await session.execute(due_query(now, limit, dialect))
    return [DueSchedule(*row) for row in rows]


async def taken_fires(session: AsyncSession, plans: Sequence[FirePlan]) -> set[FireKey]:
    """The plans' due times that have a fire in the log already (not backfills)."""
    if not plans:
        return set()
    wanted = {plan.key for plan in plans}
    rows = await session.execute(
        sa.select(ScheduleFire.schedule_id, ScheduleFire.scheduled_for).where(
            among(ScheduleFire.schedule_id, {plan.schedule.id for plan in plans}, session),
            ScheduleFire.scheduled_for >= min(plan.scheduled_for for plan in plans),
            ScheduleFire.backfill.is_(False),
        )
    )
    return {key for key in ((row[0], row[1]) for row in rows) if key in wanted}


class FireWriter:
    """Writes planned fires: runs, fire-log rows, schedules (see the module docstring)."""

    def __init__(self, runs: RunLifecycle, instance_id: str) -> None:
        self.runs = runs
        self.instance_id = instance_id

    async def write(
        self,
        session: AsyncSession,
        plans: Sequence[FirePlan],
        now: datetime,
        *,
        manual: bool,
        taken: Set[FireKey] = frozenset(),
    ) -> list[FireResult]:
        """Start the runs of the plans that start one, apply the overlap policy to those
        whose organization has a run active, log each fire with its outcome and advance
        the schedules (unless `manual`: a run by hand leaves its schedule's times alone).

        Plans in `taken` (fired elsewhere) only advance their schedule. Raises
        FireTakenError, after writing runs the caller's rollback undoes, when the log
        turns out to hold another plan's fire already.
        """
        fresh = [plan for plan in plans if plan.key not in taken]
        to_start = [plan for plan in fresh if plan.outcome is FireOutcome.STARTED]
        # An organization has one active run at most: of its schedules due together, only
        # the first can start one (the index would refuse the others' anyway).
        first_of_org: dict[uuid.UUID, FirePlan] = {}
        for plan in to_start:
            first_of_org.setdefault(plan.schedule.org_id, plan)
        starting = list(first_of_org.values())
        run_ids = await self.runs.create_runs(session, [run_spec(plan) for plan in starting])
        for plan, run_id in zip(starting, run_ids, strict=True):
            plan.run_id = run_id
        blocked = [plan for plan in to_start if plan.run_id is None]
        if blocked:
            await apply_overlap(session, self.runs, blocked)
        if fresh:
            await self._log(session, fresh, now, manual=manual)
        if not manual:
            await advance_schedules(session, plans, taken, now)
        for plan in plans:
            if plan.key in taken:
                logger.info(
                    "schedule %s: due time %s was fired elsewhere",
                    plan.schedule.id,
                    plan.scheduled_for.isoformat(),
                )
        return [FireResult.of(plan, now, manual=manual) for plan in fresh]

    async def _log(
        self, session: AsyncSession, plans: list[FirePlan], now: datetime, *, manual: bool
    ) -> None:
        """Insert the plans' rows into the fire log, each with its outcome."""
        statement = insert_ignoring_conflicts(
            session, ScheduleFire, index_elements=["schedule_id", "scheduled_for", "backfill"]
        )
        rows = [
            {
                "id": plan.fire_id,
                "schedule_id": plan.schedule.id,
                "org_id": plan.schedule.org_id,
                "scheduled_for": plan.scheduled_for,
                "fired_at": now,
                "outcome": plan.outcome,
                "run_id": plan.run_id,
                "detail": plan.detail,
                "instance_id": self.instance_id,
                "manual": manual,
                "backfill": False,
            }
            for plan in plans
        ]
        connection = await session.connection()
        if connection.dialect.supports_sane_multi_rowcount:
            # SQLite counts the rows an executemany inserted: cheaper than a RETURNING row
            # per fire, and only a batch with a taken key reads which ones went in.
            result = await connection.execute(statement, rows)
            if result.rowcount == len(rows):
                return
            logged = set(
                await session.scalars(
                    sa.select(ScheduleFire.id).where(
                        among(ScheduleFire.id, [plan.fire_id for plan in plans], session)
                    )
                )
            )
        else:
            logged = set(await session.scalars(statement.returning(ScheduleFire.id), rows))
        if len(logged) < len(plans):
            raise FireTakenError([plan.key for plan in plans if plan.fire_id not in logged])


async def advance_schedules(
    session: AsyncSession, plans: Sequence[FirePlan], taken: Set[FireKey], now: datetime
) -> None:
    """Write each plan's changes to its schedule: one UPDATE per distinct set of values (the
    schedules of a burst share a next due time and a few outcomes)."""
    groups: dict[tuple[tuple[str, Any], ...], list[uuid.UUID]] = {}
    for plan in plans:
        changes = schedule_changes(plan, claimed=plan.key not in taken, now=now)
        groups.setdefault(tuple(sorted(changes.items())), []).append(plan.schedule.id)
    for values, schedule_ids in groups.items():
        await session.execute(
            sa.update(CollectionSchedule)
            .where(among(CollectionSchedule.id, schedule_ids, session))
            .values(dict(values))
            .execution_options(synchronize_session=False)
        )


async def apply_overlap(session: AsyncSession, runs: RunLifecycle, blocked: list[FirePlan]) -> None:
    """Fires whose organization has an active run, by their schedule's overlap policy:
    `skip` logs them skipped; `buffer_one` queues a run that starts when the active one
    ends (at most one per schedule: a second is skipped); `cancel_other` cancels the
    active run (its results stay) and queues this one, which starts once it reads
    cancelled."""
    active = await session.execute(
        sa.select(CollectionRun.org_id, CollectionRun.id, CollectionRun.status).where(
            among(CollectionRun.org_id, {plan.schedule.org_id for plan in blocked}, session),
            CollectionRun.status.in_(ACTIVE_RUN_STATUSES),
        )
    )
    by_org = {org_id: (run_id, status) for org_id, run_id, status in active}
    to_queue: list[FirePlan] = []
    for plan in blocked:
        run_id, status = by_org.get(plan.schedule.org_id, (None, None))
        plan.outcome, plan.run_id = FireOutcome.SKIPPED, run_id
        plan.detail = (
            f"run {run_id} was still {status.value}"
            if run_id and status
            else "another run was active"
        )
        if run_id is None or plan.schedule.overlap_policy is OverlapPolicy.SKIP:
            continue
        if plan.schedule.overlap_policy is OverlapPolicy.CANCEL_OTHER:
            try:
                cancelled = await runs.cancel_run(
                    session, org_id=plan.schedule.org_id, run_id=run_id
                )
            except TransitionNotAllowedError:  # already cancelling
                cancelled = None
            plan.replaced_run_id = run_id
            plan.detail = f"cancelled run {run_id} ({status.value if status else '?'})" + (
                f", now {cancelled.status.value}" if cancelled else ""
            )
        to_queue.append(plan)
    queued = await runs.create_runs(session, [run_spec(plan) for plan in to_queue], queued=True)
    for plan, run_id in zip(to_queue, queued, strict=True):
        if run_id is None:
            plan.detail = (
                f"{plan.detail}; a run of this schedule is queued already"
                if plan.replaced_run_id
                else f"{plan.detail}, and a run of this schedule is queued already"
            )
            continue
        plan.run_id = run_id
        if plan.replaced_run_id is not None:
            plan.outcome = FireOutcome.REPLACED
            plan.detail = f"{plan.detail}; this run starts once it reads cancelled"
        else:
            plan.outcome = FireOutcome.QUEUED
            plan.detail = f"waits for run {by_org[plan.schedule.org_id][0]} to end"
