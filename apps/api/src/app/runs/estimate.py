"""What a run will take, before it starts and while it runs: the provider calls it still
needs, the eBay budget left today (the organization's share of it, its cap) and when it
should finish.

A run searches eBay once per product: its categories' best sellers until the Amazon phase
has found them, then the products found and not searched yet (a product eBay has no
listing for under its UPC takes one more search, by title, so the count is a floor). Keepa
charges 50 tokens for a category's best-seller list and one per product. How long the
work takes comes from the run's own pace while it runs, else from the organization's
latest completed run (its length per product searched), else it is not estimated. When the
calls it needs exceed what it can count on today (the budget left, within the
organization's cap, and its fair share while other organizations' runs wait for calls
too: `app.providers.fair_share`), the rest waits for the budget's next day (midnight
Pacific time for eBay), and the following days' whole budget (or cap) is assumed its own.

`plan` is pure (the figures in, the estimate out); `estimate_run` reads them.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from app.categories import invalid_category_id
from app.core.config import Settings
from app.core.database import Database
from app.core.tenancy import org_rows
from app.providers.ebay import settings_budget_terms
from app.providers.fair_share import ShareStatus, fair_share, run_needs, share_status
from app.providers.keepa import BESTSELLERS_TOKEN_COST
from app.runs.lifecycle import PresetMissingError, PresetUnusableError
from app.tables import CategoryPreset, CollectionRun, RunPhase, RunStatus


class RunWork(Protocol):
    """What an estimate reads of a run (a `CollectionRun` row has all of it)."""

    @property
    def phase(self) -> RunPhase | None: ...
    @property
    def categories_total(self) -> int: ...
    @property
    def categories_done(self) -> int: ...
    @property
    def products_per_category(self) -> int: ...
    @property
    def products_found(self) -> int: ...
    @property
    def products_searched(self) -> int: ...


@dataclass(frozen=True, slots=True)
class PlannedRun:
    """A run not created yet: its categories and size."""

    categories_total: int
    products_per_category: int
    phase: RunPhase | None = None
    categories_done: int = 0
    products_found: int = 0
    products_searched: int = 0


@dataclass(frozen=True, slots=True)
class Estimate:
    """What the run needs and when it should finish (see the fields of `RunEstimate`)."""

    ebay_calls: int
    keepa_tokens: int | None
    ebay_daily_limit: int | None
    ebay_calls_left_today: int | None
    org_daily_cap: int | None
    org_calls_left_today: int | None
    sharing_organizations: int
    fair_share_today: int | None
    budget_resets_at: datetime | None
    fits_today: bool
    finishes_at: datetime | None
    note: str


def keepa_tokens(work: RunWork) -> int:
    """The Keepa tokens the Amazon phase still needs: a best-seller list and one token per
    product for each category left."""
    left = max(0, work.categories_total - work.categories_done)
    return left * (BESTSELLERS_TOKEN_COST + work.products_per_category)


def plan(
    needs: int,
    *,
    now: datetime,
    status: ShareStatus | None,
    tokens: int | None = None,
    seconds_per_call: float | None = None,
    remaining: timedelta | None = None,
) -> Estimate:
    """The estimate of a run that needs `needs` eBay calls (and `tokens` Keepa tokens)
    under the day's budget `status` (None: no daily limit), at `seconds_per_call` or, for
    the calls it can make today, in `remaining` when its own pace says so."""
    work = f"About {needs:,} eBay calls" + (f" and {tokens:,} Keepa tokens" if tokens else "")

    def duration(calls: int) -> timedelta | None:
        if remaining is not None and calls == needs:
            return remaining
        return None if seconds_per_call is None else timedelta(seconds=calls * seconds_per_call)

    unknown = "how long it takes is known once a run of the organization has completed."
    if status is None:
        length = duration(needs)
        finishes_at = None if length is None else now + length
        when = f"should finish at about {finishes_at:%H:%M} UTC." if finishes_at else unknown
        return Estimate(
            ebay_calls=needs,
            keepa_tokens=tokens,
            ebay_daily_limit=None,
            ebay_calls_left_today=None,
            org_daily_cap=None,
            org_calls_left_today=None,
            sharing_organizations=0,
            fair_share_today=None,
            budget_resets_at=None,
            fits_today=True,
            finishes_at=finishes_at,
            note=f"{work}; the eBay provider has no daily limit here: {when}",
        )
    terms, me = status.terms, dataclasses.replace(status.mine, needs=needs)
    left, cap = status.left, me.cap
    cap_left = None if cap is None else max(0, cap - me.calls)
    today = left if cap_left is None else min(left, cap_left)
    parts = [f"{work}; {left:,} of the {terms.limit:,} eBay calls a day are left today"]
    if cap_left is not None:
        parts.append(f"the organization's cap of {cap:,} a day leaves it {cap_left:,}")
    rivals = status.rivals()
    share = None
    if rivals and needs + sum(rival.wanted for rival in rivals) > left:
        share = fair_share(me, rivals, left)
        today = min(today, share)
        others = f"{len(rivals)} other organization{'s' if len(rivals) > 1 else ''}"
        parts.append(f"{others} wait for them too: this run's fair share is about {share:,}")
    resets_at = terms.resets_at(now)
    fits = needs <= today
    if fits:
        length = duration(needs)
        finishes_at = None if length is None else now + length
        verdict = f"Should finish at about {finishes_at:%H:%M} UTC." if finishes_at else unknown
    else:
        per_day = terms.limit if cap is None else min(cap, terms.limit)
        rest = needs - max(0, today)
        days = math.ceil(rest / per_day)
        length = duration(rest - (days - 1) * per_day)
        finishes_at = None if length is None else resets_at + timedelta(days=days - 1) + length
        verdict = f"Not today: the eBay budget resets at {resets_at:%H:%M} UTC"
        verdict += (
            f"; should finish at about {finishes_at:%Y-%m-%d %H:%M} UTC."
            if finishes_at
            else "; " + unknown
        )
    note = "; ".join(parts) + ". " + (verdict[0].upper() + verdict[1:])
    return Estimate(
        ebay_calls=needs,
        keepa_tokens=tokens,
        ebay_daily_limit=terms.limit,
        ebay_calls_left_today=left,
        org_daily_cap=cap,
        org_calls_left_today=cap_left,
        sharing_organizations=len(rivals) if share is not None else 0,
        fair_share_today=share,
        budget_resets_at=resets_at,
        fits_today=fits,
        finishes_at=finishes_at,
        note=note,
    )


async def estimate_run(
    session: AsyncSession,
    database: Database,
    settings: Settings,
    *,
    org_id: uuid.UUID,
    work: RunWork,
    now: datetime,
    remaining: timedelta | None = None,
) -> Estimate:
    """The estimate of `work` (a run of `org_id`, or one planned), as the figures are now;
    `remaining`: how long the run has left at its own pace, when that is known."""
    needs = run_needs(
        phase=work.phase,
        categories_left=max(0, work.categories_total - work.categories_done),
        products_per_category=work.products_per_category,
        products_found=work.products_found,
        products_searched=work.products_searched,
    )
    terms = settings_budget_terms(settings)
    status = None if terms is None else await share_status(database, terms, org_id, now=now)
    tokens = keepa_tokens(work) if settings.amazon_provider == "keepa" else None
    return plan(
        needs,
        now=now,
        status=status,
        tokens=tokens,
        seconds_per_call=await seconds_per_product(session, org_id),
        remaining=remaining,
    )


async def seconds_per_product(session: AsyncSession, org_id: uuid.UUID) -> float | None:
    """How long the organization's latest completed run took per product it searched
    (both phases); None before one has completed."""
    row = (
        await session.execute(
            org_rows(CollectionRun, org_id)
            .with_only_columns(
                CollectionRun.started_at, CollectionRun.finished_at, CollectionRun.products_searched
            )
            .where(CollectionRun.status == RunStatus.COMPLETED, CollectionRun.products_searched > 0)
            .order_by(CollectionRun.finished_at.desc())
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    started_at, finished_at, searched = row
    if started_at is None or finished_at is None:
        return None
    return max(0.0, (finished_at - started_at).total_seconds()) / searched


async def planned(
    session: AsyncSession,
    settings: Settings,
    *,
    org_id: uuid.UUID,
    preset_id: uuid.UUID | None,
    category_ids: Sequence[str] | None,
    products_per_category: int | None,
) -> PlannedRun:
    """The run `POST /collection/runs` would create with the same input: a preset's
    categories (PresetMissingError, PresetUnusableError as when creating) or those given,
    of the given size or the default."""
    if preset_id is not None:
        preset = await session.scalar(
            org_rows(CategoryPreset, org_id).where(CategoryPreset.id == preset_id)
        )
        if preset is None:
            raise PresetMissingError(preset_id)
        if problem := invalid_category_id(preset.category_ids):
            raise PresetUnusableError(preset.id, preset.name, problem)
        category_ids = preset.category_ids
    return PlannedRun(
        categories_total=len(category_ids or ()),
        products_per_category=products_per_category or settings.run_products_per_category,
    )
