"""What the API and the web pages do to runs, in one place: the lifecycle change, its
commit, then what follows on this instance (execute the run, interrupt it, announce it).

A route or a page calls one command and shows its answer; the rules (which status allows
what, one active run per organization, tenant scoping) live in `RunLifecycle`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.database import Database
from app.runs.executor import RunExecutor
from app.runs.lifecycle import RunLifecycle
from app.runs.notifications import Mailer, notify_run_ended
from app.tables import CollectionRun, RunStatus, RunTrigger


class RunCommands:
    """Create, start, pause, resume and cancel runs on behalf of a member."""

    def __init__(
        self, lifecycle: RunLifecycle, executor: RunExecutor, database: Database, mailer: Mailer
    ) -> None:
        self.lifecycle = lifecycle
        self.executor = executor
        self.database = database
        self.mailer = mailer

    async def create(
        self,
        session: AsyncSession,
        *,
        org_id: uuid.UUID,
        created_by: uuid.UUID | None,
        preset_id: uuid.UUID | None = None,
        category_ids: Sequence[str] | None = None,
        name: str | None = None,
        products_per_category: int | None = None,
        listings_per_product: int | None = None,
    ) -> CollectionRun:
        """A new pending run (committed); `start` starts it."""
        run = await self.lifecycle.create_run(
            session,
            org_id=org_id,
            created_by=created_by,
            preset_id=preset_id,
            category_ids=category_ids,
            name=name,
            products_per_category=products_per_category,
            listings_per_product=listings_per_product,
        )
        await session.commit()
        return run

    async def start(
        self, session: AsyncSession, *, org_id: uuid.UUID, run_id: uuid.UUID
    ) -> CollectionRun:
        """pending → running, executed here if this instance has room (else by the sweep of
        whichever instance has)."""
        run = await self.lifecycle.start_run(session, org_id=org_id, run_id=run_id)
        await session.commit()
        await self.executor.submit(run.id)
        return run

    async def pause(
        self, session: AsyncSession, *, org_id: uuid.UUID, run_id: uuid.UUID
    ) -> CollectionRun:
        """running → pausing (→ paused once the calls in flight are checkpointed), or
        paused at once when no instance executes it."""
        run = await self.lifecycle.pause_run(session, org_id=org_id, run_id=run_id)
        await session.commit()
        self.executor.interrupt(run.id)
        return run

    async def resume(
        self, session: AsyncSession, *, org_id: uuid.UUID, run_id: uuid.UUID
    ) -> CollectionRun:
        """paused → running from the last checkpoint; pausing → running withdraws the pause."""
        run = await self.lifecycle.resume_run(session, org_id=org_id, run_id=run_id)
        await session.commit()
        await self.executor.submit(run.id)
        return run

    async def cancel(
        self, session: AsyncSession, *, org_id: uuid.UUID, run_id: uuid.UUID
    ) -> CollectionRun:
        """→ cancelling (→ cancelled once the calls in flight are checkpointed), or
        cancelled at once; results so far stay. A scheduled run cancelled at once is
        announced here; a cancelling one by the instance that settles it."""
        run = await self.lifecycle.cancel_run(session, org_id=org_id, run_id=run_id)
        await session.commit()
        self.executor.interrupt(run.id)
        if run.status is RunStatus.CANCELLED:
            self.executor.poke()  # a run queued behind this one may start now
        if run.trigger is RunTrigger.SCHEDULE and run.status is RunStatus.CANCELLED:
            self.mailer.later(notify_run_ended(self.database, self.mailer, run.id))
        return run
