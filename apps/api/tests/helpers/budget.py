"""Organizations whose runs wait for eBay calls, made straight in the database, and the
calls each took from the shared budget: what the fair share's tests start from and read."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import sqlalchemy as sa
from fastapi import FastAPI

from app.core.clock import utcnow
from app.core.database import Database
from app.instance import Instance
from app.providers.budget_tables import ProviderCallCap, ProviderOrgCallCount
from app.providers.ebay import budget_terms
from app.providers.fair_share import BudgetTerms, FairDailyCallBudget
from app.tables import CollectionRun, Organization, RunPhase, RunStatus


def terms(limit: int, *, turn: int = 5, default_cap: int | None = None) -> BudgetTerms:
    """eBay's budget of `limit` calls a day, shared in turns of `turn`."""
    return budget_terms(limit, setting="EBAY_DAILY_CALL_LIMIT", turn=turn, default_cap=default_cap)


def budget(
    database: Database, limit: int, *, turn: int = 5, default_cap: int | None = None
) -> FairDailyCallBudget:
    """The shared eBay budget of `limit` calls a day (on the real clock)."""
    return FairDailyCallBudget(database, terms(limit, turn=turn, default_cap=default_cap))


async def org_with_run(
    database: Database,
    name: str,
    *,
    products: int = 10_000,
    status: RunStatus = RunStatus.RUNNING,
    phase: RunPhase = RunPhase.EBAY,
    lease_for: timedelta = timedelta(hours=1),
    cap: int | None = None,
) -> uuid.UUID:
    """A new organization whose one run is `status` in `phase` with `products` found and
    none searched, held by a lease for `lease_for` (negative: expired); its own daily cap
    of eBay calls when `cap` is given."""
    now = utcnow()
    async with database.transaction() as session:
        org = Organization(name=name)
        session.add(org)
        await session.flush()
        session.add(
            CollectionRun(
                org_id=org.id,
                name=f"{name}'s run",
                status=status,
                phase=phase,
                category_ids=["1"],
                categories_total=1,
                categories_done=1,
                products_per_category=50,
                listings_per_product=20,
                products_found=products,
                lease_owner="test:1",
                lease_expires_at=now + lease_for,
                started_at=now,
            )
        )
        if cap is not None:
            session.add(
                ProviderCallCap(org_id=org.id, provider="ebay", daily_calls=cap, updated_at=now)
            )
        return org.id


async def calls_taken(database: Database) -> dict[uuid.UUID, int]:
    """The calls each organization took today (every day counted: tests run in one)."""
    async with database.read() as session:
        rows = await session.execute(
            sa.select(
                ProviderOrgCallCount.org_id, sa.func.sum(ProviderOrgCallCount.calls)
            ).group_by(ProviderOrgCallCount.org_id)
        )
        return {org_id: int(calls) for org_id, calls in rows}


@contextmanager
def budgeted(app: FastAPI, limit: int, **settings: object) -> Iterator[Instance]:
    """The app's estimates and pages see a sample eBay budget of `limit` calls a day
    (SAMPLE_EBAY_DAILY_CALL_LIMIT) and the other `settings` meanwhile."""
    saved: Instance = app.state.instance
    changed = saved.settings.model_copy(update={"sample_ebay_daily_call_limit": limit, **settings})
    app.state.instance = dataclasses.replace(saved, settings=changed)
    try:
        yield app.state.instance
    finally:
        app.state.instance = saved
