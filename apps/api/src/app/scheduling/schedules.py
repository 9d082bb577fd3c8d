"""Collection schedules: settings per organization, and firing due times exactly once.

A fire is claimed by inserting its row into the fire log, unique per (schedule, due
time, backfill): whichever replica inserts it first owns the fire, the others' inserts do
nothing (a backfill of a due time, `app.scheduling.backfill`, is a row of its own).
The run it starts is created by the same insert path as a manual run, whose conflict
target is the "one active run per organization" index, so the skip rule is atomic too.
Both happen, with advancing the schedule's `next_run_at`, in one transaction.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import Clock, utcnow
from app.core.config import Settings
from app.core.database import SYSTEM, Database, acting_as, insert_ignoring_conflicts
from app.core.pagination import PageParams, paginate
from app.core.tenancy import org_rows
from app.errors import ConflictError, NotFoundError
from app.runs.lifecycle import RunLifecycle
from app.scheduling import settings
from app.scheduling.cron import CronError, parse
from app.scheduling.fires import (
    REFUSALS,
    FireFilter,
    FirePlan,
    ago,
    apply_overlap,
    count_between,
    countdown,
    refusal,
    run_spec,
    unusable_preset,
)
from app.tables import (
    CategoryPreset,
    CollectionSchedule,
    FireOutcome,
    OverlapPolicy,
    ScheduleFire,
)

logger = logging.getLogger(__name__)


class NoScheduleError(NotFoundError):
    """The organization has no schedule yet."""

    def __init__(self, org_id: uuid.UUID) -> None:
        super().__init__("this organization has no schedule yet: PATCH one first")
        self.org_id = org_id


class TriggeredAlreadyError(ConflictError):
    """The schedule was triggered at this very moment by another request."""

    def __init__(self, schedule_id: uuid.UUID) -> None:
        super().__init__("the schedule was triggered at this very moment by another request")
        self.schedule_id = schedule_id


@dataclass(frozen=True, slots=True)
class FireResult:
    """What happened at one due time of one schedule."""

    fire_id: uuid.UUID
    schedule_id: uuid.UUID
    org_id: uuid.UUID
    scheduled_for: datetime
    fired_at: datetime
    outcome: FireOutcome
    run_id: uuid.UUID | None
    detail: str | None
    notify: bool
    manual: bool = False
    """From POST /schedule/trigger (the caller got the outcome as the answer)."""
    replaced_run_id: uuid.UUID | None = None
    """The active run cancelled for this fire (overlap policy cancel_other)."""
    jitter: timedelta = timedelta(0)
    """The schedule's jitter offset: the fire was due at `scheduled_for + jitter`."""
    policy: OverlapPolicy = OverlapPolicy.SKIP
    backfill: bool = False
    """From POST /collection/schedules/{id}/backfill (a past due time, queued again)."""


class ScheduleService:
    """Reads and changes schedules, and fires the due ones."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        runs: RunLifecycle,
        *,
        clock: Clock = utcnow,
    ) -> None:
        self.database = database
        self.settings = settings
        self.runs = runs
        self.clock = clock
        self.grace = timedelta(seconds=settings.schedule_misfire_grace_seconds)
        # A tick runs a little after its due time (and a replica may learn of a changed
        # schedule up to one poll late): lateness within that is not a misfire.
        self.slack = timedelta(seconds=settings.scheduler_poll_seconds)
        self.batch_size = settings.scheduler_batch_size
        self.instance_id = settings.instance_id

    # --- settings -----------------------------------------------------------------------

    async def get(
        self, session: AsyncSession, *, org_id: uuid.UUID
    ) -> tuple[CollectionSchedule | None, str | None]:
        """The organization's default schedule (None if it has none) and its preset's name."""
        return await settings.default_schedule(session, org_id)

    async def update(
        self,
        session: AsyncSession,
        *,
        org_id: uuid.UUID,
        changes: dict[str, Any],
        actor_id: uuid.UUID | None = None,
    ) -> tuple[CollectionSchedule, str | None]:
        """Create or change the organization's default schedule (the seed's one schedule);
        `changes` holds only the given fields. A default schedule made here is named
        "Default" and has no jitter, so it fires on its cron times as it always did."""
        now = self.clock()
        schedule, _ = await self.get(session, org_id=org_id)
        if schedule is None:
            try:
                async with session.begin_nested():
                    schedule, preset_name = await settings.create_schedule(
                        session, org_id, changes, now=now, actor_id=actor_id
                    )
            except IntegrityError:
                # Another request created it a moment ago: apply the change to that one.
                return await self.update(session, org_id=org_id, changes=changes, actor_id=actor_id)
            return schedule, preset_name
        preset_name = await settings.apply_changes(
            session, schedule, changes, now=now, actor_id=actor_id, is_new=False
        )
        await session.flush()
        logger.info(
            "schedule %s of org %s: %s", schedule.id, org_id, settings.describe_state(schedule)
        )
        return schedule, preset_name

    async def create(
        self,
        session: AsyncSession,
        *,
        org_id: uuid.UUID,
        fields: dict[str, Any],
        actor_id: uuid.UUID | None,
    ) -> tuple[CollectionSchedule, str | None]:
        """A new schedule of the organization (POST /collection/schedules)."""
        return await settings.create_schedule(
            session, org_id, fields, now=self.clock(), actor_id=actor_id
        )

    async def change(
        self,
        session: AsyncSession,
        *,
        org_id: uuid.UUID,
        schedule_id: uuid.UUID,
        changes: dict[str, Any],
        actor_id: uuid.UUID | None,
    ) -> tuple[CollectionSchedule, str | None]:
        """Change one schedule; `is_default: true` makes it the default."""
        schedule, _ = await settings.get_schedule(session, org_id, schedule_id)
        preset_name = await settings.apply_changes(
            session, schedule, changes, now=self.clock(), actor_id=actor_id, is_new=False
        )
        if changes.get("is_default"):
            await settings.make_default(session, schedule)
        await session.flush()
        logger.info(
            "schedule %s of org %s: %s", schedule.id, org_id, settings.describe_state(schedule)
        )
        return schedule, preset_name

    async def history(
        self,
        session: AsyncSession,
        *,
        org_id: uuid.UUID,
        page: PageParams,
        schedule_id: uuid.UUID | None = None,
        only: FireFilter | None = None,
    ) -> tuple[list[ScheduleFire], str | None]:
        """Fires of one schedule (default: the default schedule), newest first; `only` those
        that match. A cursor continues the list it came from: pass it with the same filter."""
        if schedule_id is None:
            schedule, _ = await self.get(session, org_id=org_id)
            if schedule is None:
                return [], None
            schedule_id = schedule.id
        else:
            await settings.get_schedule(session, org_id, schedule_id)  # 404 if not ours
        return await paginate(
            session,
            (only or FireFilter()).apply(
                org_rows(ScheduleFire, org_id).where(ScheduleFire.schedule_id == schedule_id)
            ),
            created_at=ScheduleFire.fired_at,
            row_id=ScheduleFire.id,
            params=page,
        )

    async def next_due(self) -> datetime | None:
        """The earliest due time of any enabled schedule (to know when to wake up next)."""
        with acting_as(SYSTEM):
            async with self.database.read() as session:
                return await session.scalar(
                    sa.select(sa.func.min(CollectionSchedule.next_run_at)).where(
                        CollectionSchedule.enabled
                    )
                )

    # --- firing ---------------------------------------------------------------------------

    async def fire_due(
        self, on_batch: Callable[[list[FireResult]], None] | None = None
    ) -> list[FireResult]:
        """Fire every schedule whose due time has come, in batches; return what happened.

        `on_batch` gets each batch's results as soon as it is committed, so their follow-up
        (starting runs, logs, mail) happens even if a later batch fails.
        Safe to run on every replica at once: PostgreSQL hands each replica different
        rows (SKIP LOCKED) and the fire log's unique key settles any remaining race.
        """
        results: list[FireResult] = []
        while True:
            selected, batch = await self._fire_batch()
            results.extend(batch)
            if on_batch is not None and batch:
                on_batch(batch)
            if selected < self.batch_size:
                return results

    async def _fire_batch(self) -> tuple[int, list[FireResult]]:
        with acting_as(SYSTEM):
            async with self.database.transaction() as session:
                now = self.clock()
                statement = (
                    sa.select(CollectionSchedule, CategoryPreset.name, CategoryPreset.category_ids)
                    .outerjoin(CategoryPreset, CategoryPreset.id == CollectionSchedule.preset_id)
                    .where(CollectionSchedule.enabled, CollectionSchedule.next_run_at <= now)
                    .order_by(CollectionSchedule.next_run_at)
                    .limit(self.batch_size)
                )
                if self.database.dialect == "postgresql":
                    statement = statement.with_for_update(of=CollectionSchedule, skip_locked=True)
                rows = (await session.execute(statement)).all()
                plans = [self._plan(schedule, name, ids, now) for schedule, name, ids in rows]
                results = await self._write_isolated(session, plans, now, manual=False)
        return len(rows), results

    def _plan(
        self,
        schedule: CollectionSchedule,
        preset_name: str | None,
        category_ids: list[str] | None,
        now: datetime,
    ) -> FirePlan:
        """Decide what a due schedule does now: start, skip later, count as missed..."""
        assert schedule.next_run_at is not None
        offset = settings.jitter_offset(schedule.id, schedule.jitter_seconds)
        due = schedule.next_run_at - offset  # the cron time; the fire waits out the jitter
        try:
            cron = parse(schedule.cron_expression, schedule.timezone)
        except CronError as exc:  # saved by an older, laxer version; never fires again
            return FirePlan(
                schedule, preset_name, category_ids, due, None, FireOutcome.FAILED, str(exc)
            )
        timing = settings.Timing.of(schedule, cron)
        # Due times passed while nobody was firing coalesce into the latest of them (within
        # the schedule's bounds).
        latest = cron.latest_at_or_before(now - offset) or due
        if schedule.ends_at is not None and latest > schedule.ends_at:
            latest = cron.latest_at_or_before(schedule.ends_at) or due
        latest = max(due, latest)
        missed = count_between(cron, due, latest)
        plan = FirePlan(
            schedule,
            preset_name,
            category_ids,
            latest,
            timing.fire_time(timing.next_due(now)),
            FireOutcome.STARTED,
        )
        lateness = now - (latest + offset)
        if lateness > self.grace + self.slack:
            plan.outcome = FireOutcome.MISSED
            plan.detail = (
                f"due {ago(lateness)} ago, longer than SCHEDULE_MISFIRE_GRACE_SECONDS="
                f"{int(self.grace.total_seconds())} (no scheduler was running, or it was behind)"
            )
            if missed:
                plan.detail += f" ({missed} earlier due time(s) missed as well)"
        elif not category_ids:
            plan.outcome = FireOutcome.NO_PRESET
            plan.detail = "the schedule has no preset (it was deleted?): choose one"
        elif problem := unusable_preset(preset_name, category_ids):
            plan.outcome = FireOutcome.FAILED
            plan.detail = problem
        elif missed:
            plan.detail = f"late by {ago(lateness)}; coalesced {missed} earlier missed due time(s)"
        return plan

    async def _write_isolated(
        self, session: AsyncSession, plans: Sequence[FirePlan], now: datetime, *, manual: bool
    ) -> list[FireResult]:
        """`_write`, such that one schedule whose run the database refuses stops no other.

        The batch is written in a savepoint. If the database refuses it (a value too long
        for its column, a constraint), each plan is written in a savepoint of its own, and
        a plan still refused is recorded as a `failed` fire with the database's reason: its
        schedule moves on to its next due time like every other. Trouble that is not about
        the data (the connection, a lock timeout) is raised: the whole pass is retried.
        """
        try:
            async with session.begin_nested():
                copies = [replace(plan) for plan in plans]  # `_write` fills in run ids
                return await self._write(session, copies, now, manual=manual)
        except REFUSALS as exc:
            if len(plans) == 1:
                return await self._write_failed(session, plans[0], exc, now, manual=manual)
        results: list[FireResult] = []
        for plan in plans:
            try:
                async with session.begin_nested():
                    results += await self._write(session, [replace(plan)], now, manual=manual)
            except REFUSALS as exc:
                results += await self._write_failed(session, plan, exc, now, manual=manual)
        return results

    async def _write_failed(
        self, session: AsyncSession, plan: FirePlan, exc: Exception, now: datetime, *, manual: bool
    ) -> list[FireResult]:
        """Record `plan` as a fire the database refused to start (no run is created)."""
        logger.debug("schedule %s: the database refused its run", plan.schedule.id, exc_info=exc)
        failed = replace(
            plan,
            outcome=FireOutcome.FAILED,
            run_id=None,
            detail=f"could not start the run: the database refused it ({refusal(exc)}). "
            "The schedule goes on with its next due time; check the preset's categories.",
        )
        async with session.begin_nested():
            return await self._write(session, [failed], now, manual=manual)

    async def _write(
        self, session: AsyncSession, plans: list[FirePlan], now: datetime, *, manual: bool
    ) -> list[FireResult]:
        """Claim the fires, start their runs, log outcomes and advance the schedules."""
        if not plans:
            return []
        claimed = set(
            await session.scalars(
                insert_ignoring_conflicts(
                    session,
                    ScheduleFire,
                    index_elements=["schedule_id", "scheduled_for", "backfill"],
                ).returning(ScheduleFire.id),
                [
                    {
                        "id": plan.fire_id,
                        "schedule_id": plan.schedule.id,
                        "org_id": plan.schedule.org_id,
                        "scheduled_for": plan.scheduled_for,
                        "fired_at": now,
                        "instance_id": self.instance_id,
                        "manual": manual,
                        "backfill": False,
                    }
                    for plan in plans
                ],
            )
        )
        won = [plan for plan in plans if plan.fire_id in claimed]
        to_start = [plan for plan in won if plan.outcome is FireOutcome.STARTED]
        run_ids = await self.runs.create_runs(session, [run_spec(plan) for plan in to_start])
        blocked = []
        for plan, run_id in zip(to_start, run_ids, strict=True):
            plan.run_id = run_id
            if run_id is None:
                blocked.append(plan)
        if blocked:
            await apply_overlap(session, self.runs, blocked)
        if won:
            await session.execute(
                sa.update(ScheduleFire),
                [
                    {
                        "id": plan.fire_id,
                        "outcome": plan.outcome,
                        "run_id": plan.run_id,
                        "detail": plan.detail,
                    }
                    for plan in won
                ],
            )
        if not manual:
            await session.execute(
                sa.update(CollectionSchedule),
                [
                    {
                        "id": plan.schedule.id,
                        **countdown(plan, plan.fire_id in claimed, now),
                        "updated_at": now,
                        # a fire claimed elsewhere already recorded its own outcome
                        "last_run_at": plan.scheduled_for
                        if plan.fire_id in claimed
                        else plan.schedule.last_run_at,
                        "last_outcome": plan.outcome
                        if plan.fire_id in claimed
                        else plan.schedule.last_outcome,
                    }
                    for plan in plans
                ],
            )
        for plan in plans:
            if plan.fire_id not in claimed:
                logger.info(
                    "schedule %s: due time %s was fired elsewhere",
                    plan.schedule.id,
                    plan.scheduled_for.isoformat(),
                )
        return [
            FireResult(
                fire_id=plan.fire_id,
                schedule_id=plan.schedule.id,
                org_id=plan.schedule.org_id,
                scheduled_for=plan.scheduled_for,
                fired_at=now,
                outcome=plan.outcome,
                run_id=plan.run_id,
                detail=plan.detail,
                notify=plan.schedule.notify_email,
                manual=manual,
                replaced_run_id=plan.replaced_run_id,
                jitter=settings.jitter_offset(plan.schedule.id, plan.schedule.jitter_seconds),
                policy=plan.schedule.overlap_policy,
            )
            for plan in won
        ]

    async def trigger(
        self, session: AsyncSession, *, org_id: uuid.UUID, schedule_id: uuid.UUID | None = None
    ) -> FireResult:
        """Run a schedule's preset now (default: the default schedule's), under the same
        skip rule; logged like a fire."""
        if schedule_id is None:
            schedule, preset_name = await self.get(session, org_id=org_id)
            if schedule is None:
                raise NoScheduleError(org_id)
        else:
            schedule, preset_name = await settings.get_schedule(session, org_id, schedule_id)
        now = self.clock()
        category_ids = None
        if schedule.preset_id is not None:
            category_ids = await session.scalar(
                sa.select(CategoryPreset.category_ids).where(
                    CategoryPreset.id == schedule.preset_id
                )
            )
        plan = FirePlan(schedule, preset_name, category_ids, now, None, FireOutcome.STARTED)
        if not category_ids:
            plan.outcome = FireOutcome.NO_PRESET
            plan.detail = "the schedule has no preset: set preset_id first"
        elif problem := unusable_preset(preset_name, category_ids):
            plan.outcome = FireOutcome.FAILED
            plan.detail = problem
        written = await self._write_isolated(session, [plan], now, manual=True)
        if not written:  # the fire log already holds this instant: a simultaneous trigger
            raise TriggeredAlreadyError(schedule.id)
        (result,) = written
        schedule.last_run_at = now
        schedule.last_outcome = result.outcome
        await session.flush()
        return result
