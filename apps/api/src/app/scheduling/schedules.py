"""Collection schedules: settings per organization, and firing due times exactly once.

A pass fires the due schedules in batches, each batch one transaction: it claims the due
schedules, starts their runs, logs their fires and advances their `next_run_at`, a few
statements for the whole batch (`app.scheduling.firing`). The fire log is unique per
(schedule, due time, backfill), so a due time fires once however many replicas fire at
once (a backfill of a due time, `app.scheduling.backfill`, is a row of its own). A run is
created by the same insert path as a manual run, whose conflict target is the "one active
run per organization" index, so the skip rule is atomic too.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import Clock, utcnow
from app.core.config import Settings
from app.core.database import SYSTEM, Database, acting_as
from app.core.pagination import PageParams, paginate
from app.core.tenancy import org_rows
from app.errors import ConflictError, NotFoundError
from app.runs.lifecycle import RunLifecycle
from app.scheduling import settings
from app.scheduling.fires import (
    ENABLED,
    REFUSALS,
    DueSchedule,
    FireFilter,
    FirePlan,
    FireResult as FireResult,  # the engine and tests name it here
    Planner,
    refusal,
    unusable_preset,
)
from app.scheduling.firing import FireKey, FireTakenError, FireWriter, claim_due, taken_fires
from app.tables import CategoryPreset, CollectionSchedule, FireOutcome, ScheduleFire

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
        self.writer = FireWriter(runs, settings.instance_id)

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
                    sa.select(sa.func.min(CollectionSchedule.next_run_at)).where(ENABLED)
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
        """Claim and fire one batch; how many schedules it claimed, and what happened.

        A batch the database refuses, or one with a due time already in the fire log, is
        rolled back whole and done again carefully (`_fire_carefully`).
        """
        with acting_as(SYSTEM):
            try:
                async with self.database.transaction(urgent=True) as session:
                    now = self.clock()
                    due = await claim_due(session, now, self.batch_size, self.database.dialect)
                    plans = self._planner(now).plans(due)
                    return len(due), await self.writer.write(session, plans, now, manual=False)
            except (FireTakenError, *REFUSALS) as exc:
                logger.info("firing a batch again, one schedule at a time: %s", refusal(exc))
                return await self._fire_carefully()

    async def _fire_carefully(self) -> tuple[int, list[FireResult]]:
        """A batch again, leaving out the due times already in the fire log (their schedules
        just move on), and each schedule's writes in a savepoint of its own (`_write_isolated`)."""
        async with self.database.transaction(urgent=True) as session:
            now = self.clock()
            due = await claim_due(session, now, self.batch_size, self.database.dialect)
            plans = self._planner(now).plans(due)
            taken = await taken_fires(session, plans)
            return len(due), await self._write_isolated(
                session, plans, now, manual=False, taken=taken
            )

    def _planner(self, now: datetime) -> Planner:
        return Planner(now, grace=self.grace, slack=self.slack)

    async def _write_isolated(
        self,
        session: AsyncSession,
        plans: Sequence[FirePlan],
        now: datetime,
        *,
        manual: bool,
        taken: set[FireKey] | None = None,
    ) -> list[FireResult]:
        """Write each plan in a savepoint of its own, such that one schedule whose run the
        database refuses stops no other.

        A plan the database refuses (a value too long for its column, a constraint) is
        recorded as a `failed` fire with the database's reason: its schedule moves on to
        its next due time like every other. A plan whose due time is (or turns out to be)
        in the fire log already is left out; its schedule moves on. Trouble that is not
        about the data (the connection, a lock timeout) is raised: the whole pass is retried.
        """
        taken = set(taken or ())
        results: list[FireResult] = []
        for plan in plans:
            if plan.key not in taken:
                try:
                    async with session.begin_nested():
                        results += await self.writer.write(
                            session, [replace(plan)], now, manual=manual
                        )
                    continue
                except FireTakenError:
                    taken.add(plan.key)
                except REFUSALS as exc:
                    results += await self._write_failed(session, plan, exc, now, manual=manual)
                    continue
            if not manual:
                results += await self.writer.write(session, [plan], now, manual=False, taken=taken)
        return results

    async def _write_failed(
        self, session: AsyncSession, plan: FirePlan, exc: Exception, now: datetime, *, manual: bool
    ) -> list[FireResult]:
        """Record `plan` as a fire the database refused to start (no run is created); nothing
        when its due time turns out to be in the fire log already (the next pass sees it)."""
        logger.debug("schedule %s: the database refused its run", plan.schedule.id, exc_info=exc)
        failed = replace(
            plan,
            outcome=FireOutcome.FAILED,
            run_id=None,
            detail=f"could not start the run: the database refused it ({refusal(exc)}). "
            "The schedule goes on with its next due time; check the preset's categories.",
        )
        try:
            async with session.begin_nested():
                return await self.writer.write(session, [failed], now, manual=manual)
        except FireTakenError:
            return []

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
        plan = FirePlan(
            DueSchedule.of(schedule, preset_name, category_ids), now, None, FireOutcome.STARTED
        )
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
