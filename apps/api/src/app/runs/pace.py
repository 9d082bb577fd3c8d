"""How a run is doing for time: how long it has been going (or took), and while it runs
about how long it has left, from its progress counters and the pace of its checkpoints.

`estimate` is pure (the run's figures, the paces measured and the time in; the estimate
out); `timing` measures the paces from the checkpoint timestamps the pipeline writes
(`run_categories.done_at`, `run_products.searched_at`) and calls it.

The pace of the eBay phase is that of its latest `WINDOW` searches, measured up to now:
a run resumed after a pause is judged by what it does since, and searches that stall
(a slow provider, retries) slow the estimate down at once. Before the eBay phase starts,
its length is projected from the products the Amazon phase is finding and from the eBay
pace of the organization's latest completed run (the same provider, the same limits).
A quota wait under way (`resumes_at`) is added as it stands.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import RunEstimate, RunEta, RunResponse
from app.tables import CollectionRun, RunCategory, RunPhase, RunProduct, RunStatus

WINDOW = 50
"""The latest eBay searches whose pace counts."""
MIN_SEARCHES = 3
"""eBay searches needed before their pace says anything."""


class RunFigures(Protocol):
    """What an estimate reads of a run (a `CollectionRun` row has all of it)."""

    @property
    def status(self) -> RunStatus: ...
    @property
    def phase(self) -> RunPhase | None: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def resumes_at(self) -> datetime | None: ...
    @property
    def categories_total(self) -> int: ...
    @property
    def categories_done(self) -> int: ...
    @property
    def products_found(self) -> int: ...
    @property
    def products_searched(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Pace:
    """`done` units of work (categories, product searches) checkpointed in `seconds`."""

    done: int
    seconds: float

    def seconds_for(self, units: float) -> float | None:
        """How long `units` more take at this pace; None when it measured nothing."""
        if self.done <= 0 or self.seconds <= 0:
            return None
        return units * self.seconds / self.done


@dataclass(frozen=True, slots=True)
class Timing:
    """How long the run has been going (None before it starts), and about how long it has
    left (None when it cannot be estimated), with how that was estimated or why not."""

    elapsed: timedelta | None
    remaining: timedelta | None
    finishes_at: datetime | None
    note: str


def elapsed(run: RunFigures, now: datetime) -> timedelta | None:
    """Start to finish, or to now while the run has not finished (pauses included)."""
    if run.started_at is None:
        return None
    return max(timedelta(0), (run.finished_at or now) - run.started_at)


NOT_RUNNING = {
    RunStatus.PENDING: "No estimate before the run starts.",
    RunStatus.QUEUED: "No estimate before the run starts.",
    RunStatus.PAUSING: "No estimate while the run pauses.",
    RunStatus.PAUSED: "No estimate while the run is paused.",
    RunStatus.CANCELLING: "The run is being cancelled.",
}


def estimate(
    run: RunFigures,
    *,
    now: datetime,
    amazon: Pace | None = None,
    ebay: Pace | None = None,
    ebay_from_earlier_run: bool = False,
) -> Timing:
    """The run's timing at `now`: the remaining categories at the `amazon` pace, then the
    remaining (or, during the Amazon phase, projected) products at the `ebay` pace, plus a
    quota wait under way; no estimate unless the run is running and both paces are known."""
    spent = elapsed(run, now)
    if run.status is not RunStatus.RUNNING:
        note = NOT_RUNNING.get(run.status, "The run has finished.")
        return Timing(spent, None, None, note)
    wait = max(0.0, (run.resumes_at - now).total_seconds()) if run.resumes_at else 0.0
    waiting = " and the quota wait under way" if wait else ""
    if run.phase in (None, RunPhase.AMAZON):
        categories_left = max(0, run.categories_total - run.categories_done)
        amazon_seconds = amazon.seconds_for(categories_left) if amazon else None
        if amazon_seconds is None or run.categories_done == 0:
            return Timing(spent, None, None, "No estimate until the first category is collected.")
        per_category = run.products_found / run.categories_done
        products = run.products_found + categories_left * per_category
        ebay_seconds = ebay.seconds_for(products) if ebay else None
        if ebay_seconds is None:
            return Timing(
                spent,
                None,
                None,
                "No estimate until the eBay searches begin (no earlier run to judge their "
                "pace by).",
            )
        source = "of the last completed run" if ebay_from_earlier_run else "so far"
        note = f"From the pace of the Amazon categories so far and the eBay searches {source}"
        note += f"{waiting}."
        return _timing(spent, now, wait + amazon_seconds + ebay_seconds, note)
    products_left = max(0, run.products_found - run.products_searched)
    if products_left == 0:
        return _timing(spent, now, wait, "Every product is searched: the run is finishing.")
    if ebay is None or ebay.done < MIN_SEARCHES:
        return Timing(spent, None, None, "No estimate until a few eBay searches are done.")
    ebay_seconds = ebay.seconds_for(products_left)
    if ebay_seconds is None:
        return Timing(spent, None, None, "No estimate until a few eBay searches are done.")
    note = f"From the pace of the last {ebay.done} eBay searches{waiting}."
    return _timing(spent, now, wait + ebay_seconds, note)


def _timing(spent: timedelta | None, now: datetime, seconds: float, note: str) -> Timing:
    remaining = timedelta(seconds=round(seconds))
    return Timing(spent, remaining, now + remaining, note)


async def timing(session: AsyncSession, run: CollectionRun, *, now: datetime) -> Timing:
    """The run's timing at `now`, its paces measured from its checkpoints (only while it
    runs: a few small indexed reads)."""
    if run.status is not RunStatus.RUNNING or run.started_at is None:
        return estimate(run, now=now)
    if run.phase in (None, RunPhase.AMAZON):
        amazon = Pace(run.categories_done, (now - run.started_at).total_seconds())
        earlier = await _earlier_ebay_pace(session, run)
        return estimate(run, now=now, amazon=amazon, ebay=earlier, ebay_from_earlier_run=True)
    return estimate(run, now=now, ebay=await _ebay_pace(session, run.id, now))


async def _ebay_phase_start(session: AsyncSession, run_id: uuid.UUID) -> datetime | None:
    """When the run's last category was collected (its eBay phase began then)."""
    started: datetime | None = await session.scalar(
        sa.select(sa.func.max(RunCategory.done_at)).where(RunCategory.run_id == run_id)
    )
    return started


async def _ebay_pace(session: AsyncSession, run_id: uuid.UUID, now: datetime) -> Pace | None:
    """The pace of the run's latest WINDOW searches, from the one before them (or the start
    of the eBay phase) up to now."""
    latest = list(
        await session.scalars(
            sa.select(RunProduct.searched_at)
            .where(RunProduct.run_id == run_id, RunProduct.searched_at.is_not(None))
            .order_by(RunProduct.searched_at.desc())
            .limit(WINDOW + 1)
        )
    )
    if len(latest) > WINDOW:
        since: datetime | None = latest[WINDOW]
    else:
        since = await _ebay_phase_start(session, run_id) or (latest[-1] if latest else None)
    if since is None:
        return None
    return Pace(min(len(latest), WINDOW), (now - since).total_seconds())


async def _earlier_ebay_pace(session: AsyncSession, run: CollectionRun) -> Pace | None:
    """The eBay pace of the organization's latest completed run: its searches over the
    length of its eBay phase."""
    phase_start = (
        sa.select(sa.func.max(RunCategory.done_at))
        .where(RunCategory.run_id == CollectionRun.id)
        .scalar_subquery()
    )
    row = (
        await session.execute(
            sa.select(CollectionRun.products_searched, CollectionRun.finished_at, phase_start)
            .where(
                CollectionRun.org_id == run.org_id,
                CollectionRun.status == RunStatus.COMPLETED,
                CollectionRun.id != run.id,
                CollectionRun.products_searched >= MIN_SEARCHES,
            )
            .order_by(CollectionRun.created_at.desc())
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    searched, finished_at, began = row
    if finished_at is None or began is None:
        return None
    return Pace(searched, (finished_at - began).total_seconds())


def timed(row: CollectionRun, timing: Timing, estimate: RunEstimate | None = None) -> RunResponse:
    """The run with its elapsed time and, while it is not finished, its estimates (the
    time left; `estimate`: what it needs of the providers' budgets, when the caller has
    worked it out)."""
    elapsed = timing.elapsed
    eta = None
    if row.finished_at is None:
        eta = RunEta(
            remaining_seconds=None
            if timing.remaining is None
            else int(timing.remaining.total_seconds()),
            finishes_at=timing.finishes_at,
            note=timing.note,
        )
    return RunResponse.model_validate(row).model_copy(
        update={
            "elapsed_seconds": None if elapsed is None else int(elapsed.total_seconds()),
            "eta": eta,
            "estimate": estimate,
        }
    )
