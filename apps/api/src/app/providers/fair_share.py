"""The fair share of a provider's daily call budget between organizations: whose run takes
the next call when the calls left today are fewer than the running runs need.

The pipeline charges each provider call to the run's organization (`charged_to`). A
charged call is counted in one transaction twice: in the service's row of
`provider_call_counts` (the budget, never past its limit) and in the organization's row of
`provider_org_call_counts` (its calls today and the pace it takes them at). The
transaction begins with the day's count (an upsert that refuses at the limit, and locks
the row: on PostgreSQL until the commit; SQLite's write transactions are serialized
anyway), so the takes of every instance are serialized and each decides on figures nobody
changes under it; a refusal rolls the count back. The limit, an organization's cap and its
turn hold exactly, however many replicas. A granted call costs three statements (the
day's count, the organizations waiting, the organization's count).

Who may take a call (`refusal`):

- nobody once the budget is spent, nor an organization at its daily cap (its admins'
  own, or the operator's default): they wait for the provider's next day;
- anybody while the calls left cover what every waiting run still needs;
- otherwise round robin, in turns of `turn` calls: an organization may take a call while
  it has taken fewer than `turn` more today than the one that took the fewest among the
  others whose runs wait for calls (running, in their eBay phase, under a live lease,
  below their cap, with products left). The one with the fewest is never held back, so
  nobody starves; an organization with nothing waiting holds nobody back (a paused or
  finished run leaves the rotation at once, one whose instance died when its lease
  expires). Counting the day's calls, an organization that starts late takes turns first
  until it has had as many as the others: the share is of the day's budget.

A call held back raises `QuotaExhaustedError` like any quota wait, with the moment the
ones behind are expected to have caught up (from the pace they take calls at), so the
run waits, shows why, and goes on from its checkpoint.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from statistics import fmean
from typing import Final, cast
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import Clock, utcnow
from app.core.database import SYSTEM, Database, acting_as, dialect_insert
from app.providers.base import QuotaExhaustedError
from app.providers.budget import CALL_COUNTS, SharedDailyCallBudget, next_midnight
from app.providers.budget_tables import ProviderCallCap, ProviderOrgCallCount
from app.tables import CollectionRun, Organization, RunPhase, RunStatus

ORG_COUNTS: Final = cast(sa.Table, ProviderOrgCallCount.__table__)
PACE_WEIGHT: Final = 0.2
"""Weight of the latest interval between an organization's calls in its pace."""
PACE_GAP: Final = timedelta(seconds=30)
"""An interval longer than this is a pause, not the pace."""
PACE_OUTLIER: Final = 3.0
"""An interval counts for at most this many times the pace (a slowdown shows in a few
calls, a wait for its turn hardly)."""
DEFAULT_SECONDS_PER_CALL: Final = 1.0
"""The pace assumed of an organization before anybody's pace is known."""
MIN_TURN_WAIT: Final = timedelta(milliseconds=50)
MAX_TURN_WAIT: Final = timedelta(minutes=1)
"""A run held back checks again at least this often (one behind it may have stopped)."""

_charged: ContextVar[uuid.UUID | None] = ContextVar("charged_org", default=None)


@contextmanager
def charged_to(org_id: uuid.UUID) -> Iterator[None]:
    """Charge the provider calls made in the block to `org_id`'s share of the budgets."""
    token = _charged.set(org_id)
    try:
        yield
    finally:
        _charged.reset(token)


@dataclass(frozen=True, slots=True)
class BudgetTerms:
    """A provider's daily call budget as the settings define it, and how it is shared."""

    provider: str
    label: str
    setting: str
    limit: int
    zone: ZoneInfo
    turn: int
    """Calls an organization may take ahead of another one waiting; 0: first come, first
    served."""
    default_cap: int | None = None
    """The operator's daily cap for each organization (an organization's own may be lower)."""

    def day(self, now: datetime) -> date:
        """The provider day `now` falls in."""
        return now.astimezone(self.zone).date()

    def resets_at(self, now: datetime) -> datetime:
        """When the provider's next day begins, in UTC."""
        return next_midnight(now, self.zone)

    def cap(self, own: int | None) -> int | None:
        """The daily cap in force for an organization whose admins set `own`."""
        caps = [cap for cap in (own, self.default_cap) if cap is not None]
        return min(caps) if caps else None


@dataclass(frozen=True, slots=True)
class Taker:
    """An organization as the rotation sees it: its calls today, what its run still needs,
    its cap, its pace and how long its run waits already."""

    org_id: uuid.UUID
    calls: int
    needs: int
    cap: int | None = None
    seconds_per_call: float | None = None
    waiting_until: datetime | None = None

    @property
    def capped(self) -> bool:
        """Whether it has taken its daily cap."""
        return self.cap is not None and self.calls >= self.cap

    @property
    def wanted(self) -> int:
        """Calls it may still take today for its run: its needs, within its cap."""
        return self.needs if self.cap is None else max(0, min(self.needs, self.cap - self.calls))


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a call may not be taken now, and when to try again."""

    reason: str
    """`spent`, `capped` or `turn`."""
    resume_at: datetime
    sharing: int = 0
    """With `turn`: the organizations taking turns, this one included."""
    left: int = 0


@dataclass(frozen=True, slots=True)
class ShareStatus:
    """The day's budget as an organization sees it: used, its own calls and cap, and the
    other organizations whose runs wait for calls now."""

    terms: BudgetTerms
    used: int
    mine: Taker
    others: list[Taker] = field(default_factory=list)
    last_call_at: datetime | None = None
    """When this organization took its latest call today."""

    @property
    def left(self) -> int:
        """Calls left today, for everybody."""
        return max(0, self.terms.limit - self.used)

    def rivals(self) -> list[Taker]:
        """The others that take turns with this organization now."""
        return [other for other in self.others if not other.capped and other.needs > 0]


def refusal(
    me: Taker,
    others: Sequence[Taker],
    *,
    left: int,
    turn: int,
    now: datetime,
    resets_at: datetime,
) -> Refusal | None:
    """Why `me` may not take a call now (None: it may), by the rules in the module's
    docstring; `others` are the other organizations whose runs wait for calls."""
    if left <= 0:
        return Refusal("spent", resets_at)
    if me.capped:
        return Refusal("capped", resets_at)
    rivals = [other for other in others if not other.capped and other.needs > 0]
    if turn <= 0 or not rivals:
        return None
    if me.needs + sum(other.wanted for other in rivals) <= left:
        return None  # enough for everybody: no order needed
    if me.calls < min(other.calls for other in rivals) + turn:
        return None
    behind = [other for other in rivals if other.calls < me.calls]
    return Refusal("turn", now + _catch_up(me, behind, now), sharing=len(rivals) + 1, left=left)


def fair_share(me: Taker, rivals: Sequence[Taker], left: int) -> int:
    """The calls `me` can count on of the `left` ones today when it takes turns with
    `rivals`: the day's totals are evened out (each gets calls up to the level at which
    what is left runs out, none more than it wants)."""
    takers = [me, *rivals]

    def given(level: int) -> int:
        return sum(min(max(level - t.calls, 0), t.wanted) for t in takers)

    low, high = min(t.calls for t in takers), max(t.calls + t.wanted for t in takers)
    if given(high) <= left:
        return me.wanted
    while low < high:  # the highest level at which no more than `left` are given
        middle = (low + high + 1) // 2
        if given(middle) <= left:
            low = middle
        else:
            high = middle - 1
    return min(max(low - me.calls, 0), me.wanted)


def _catch_up(me: Taker, behind: Sequence[Taker], now: datetime) -> timedelta:
    """About how long until the organizations `behind` have taken as many calls as `me`,
    or all they want (then they leave the rotation), each at its pace (the average pace
    for one not measured yet) after any wait of theirs."""
    paces = [t.seconds_per_call for t in (me, *behind) if t.seconds_per_call is not None]
    usual = fmean(paces) if paces else DEFAULT_SECONDS_PER_CALL
    longest = timedelta(0)
    for other in behind:
        pace = usual if other.seconds_per_call is None else other.seconds_per_call
        seconds = min(me.calls - other.calls, other.wanted) * pace
        waits = max(timedelta(0), other.waiting_until - now) if other.waiting_until else None
        longest = max(longest, timedelta(seconds=seconds) + (waits or timedelta(0)))
    return min(MAX_TURN_WAIT, max(MIN_TURN_WAIT, longest))


def run_needs(
    *,
    phase: RunPhase | None,
    categories_left: int,
    products_per_category: int,
    products_found: int,
    products_searched: int,
) -> int:
    """The eBay calls a run still needs, about: one search per product, those found and
    not searched yet and, until the Amazon phase is over, its categories left's best
    sellers."""
    if phase in (None, RunPhase.AMAZON):
        products_found += categories_left * products_per_category
    return max(0, products_found - products_searched)


class FairDailyCallBudget(SharedDailyCallBudget):
    """The shared daily budget, with each charged call taken in the organization's turn.

    A call charged to nobody (`charged_to` not set: the providers check, a client used on
    its own) is counted against the budget only, first come, first served."""

    def __init__(self, database: Database, terms: BudgetTerms, *, clock: Clock = utcnow) -> None:
        super().__init__(
            database,
            terms.limit,
            provider=terms.provider,
            setting=terms.setting,
            label=terms.label,
            zone=terms.zone,
            clock=clock,
        )
        self.terms = terms

    async def take(self) -> None:
        org_id = _charged.get()
        if org_id is None:
            await super().take()
            return
        now = self._clock()
        terms = self.terms
        # One transaction: counting the call in the day's row first locks that row, so
        # the takes of every instance are serialized there; a refusal raises, which rolls
        # the count back.
        async with self._database.transaction() as session:
            used = await _count_in_day(session, terms, now)
            if used is None:
                raise self._spent(terms.resets_at(now), " by all instances")
            status = await _status(session, terms, org_id, used - 1, now)
            refused = refusal(
                status.mine,
                status.others,
                left=status.left,
                turn=terms.turn,
                now=now,
                resets_at=terms.resets_at(now),
            )
            if refused is not None:
                raise self._refused(refused, status.mine)
            await _count_for_org(session, terms, status, now)

    async def status(self, org_id: uuid.UUID) -> ShareStatus:
        """The day's budget as `org_id` sees it now (a read as the system: the figures of
        other organizations are only ever shown summed up)."""
        return await share_status(self._database, self.terms, org_id, now=self._clock())

    def _refused(self, refused: Refusal, me: Taker) -> QuotaExhaustedError:
        label, resume_at = self.label, refused.resume_at
        if refused.reason == "spent":
            return self._spent(resume_at, " by all instances")
        if refused.reason == "capped":
            return QuotaExhaustedError(
                f"the organization's daily cap of {me.cap:,} {label} calls is reached; "
                f"continuing at {resume_at:%Y-%m-%d %H:%M} UTC",
                provider=self.provider,
                resume_at=resume_at,
                limit=f"the daily cap of your organization ({me.cap:,} {label} calls a day, "
                "all taken today)",
            )
        return QuotaExhaustedError(
            f"{refused.sharing} organizations take turns at the {refused.left:,} {label} "
            f"calls left today; this one's next turn at {resume_at:%H:%M:%S} UTC",
            provider=self.provider,
            resume_at=resume_at,
            limit=f"its turn at the {label} budget: {refused.sharing} organizations share "
            f"what is left today ({refused.left:,} calls)",
        )


async def share_status(
    database: Database, terms: BudgetTerms, org_id: uuid.UUID, *, now: datetime
) -> ShareStatus:
    """The day's budget as `org_id` sees it at `now`, read as the system (other
    organizations' figures are only ever shown summed up)."""
    with acting_as(SYSTEM):
        async with database.read() as session:
            used = await session.scalar(
                sa.select(CALL_COUNTS.c.calls).where(
                    CALL_COUNTS.c.provider == terms.provider,
                    CALL_COUNTS.c.day == terms.day(now),
                )
            )
            return await _status(session, terms, org_id, used or 0, now)


async def _count_in_day(session: AsyncSession, terms: BudgetTerms, now: datetime) -> int | None:
    """Count one call in the day's budget row (locking it), unless the limit is reached:
    the calls counted with this one, or None."""
    insert = dialect_insert(session.get_bind().dialect.name, CALL_COUNTS)
    statement = (
        insert.values(provider=terms.provider, day=terms.day(now), calls=1, updated_at=now)
        .on_conflict_do_update(
            index_elements=[CALL_COUNTS.c.provider, CALL_COUNTS.c.day],
            set_={"calls": CALL_COUNTS.c.calls + 1, "updated_at": insert.excluded.updated_at},
            where=CALL_COUNTS.c.calls < terms.limit,
        )
        .returning(CALL_COUNTS.c.calls)
    )
    counted: int | None = (await session.execute(statement)).scalar_one_or_none()
    return counted


async def _status(
    session: AsyncSession, terms: BudgetTerms, org_id: uuid.UUID, used: int, now: datetime
) -> ShareStatus:
    """`org_id`'s calls, cap and pace, and the organizations whose runs wait for calls."""
    counts, caps, runs = ProviderOrgCallCount, ProviderCallCap, CollectionRun
    today = (counts.provider == terms.provider) & (counts.day == terms.day(now))
    waiting = await session.execute(
        sa.select(
            runs.org_id,
            runs.phase,
            runs.categories_total,
            runs.categories_done,
            runs.products_per_category,
            runs.products_found,
            runs.products_searched,
            runs.resumes_at,
            counts.calls,
            counts.seconds_per_call,
            counts.last_call_at,
            caps.daily_calls,
        )
        .outerjoin(counts, today & (counts.org_id == runs.org_id))
        .outerjoin(caps, (caps.org_id == runs.org_id) & (caps.provider == terms.provider))
        .where(
            runs.status == RunStatus.RUNNING,
            runs.phase == RunPhase.EBAY,
            runs.lease_expires_at > now,
        )
    )
    takers, last_calls = {}, {}
    for row in waiting:
        last_calls[row.org_id] = row.last_call_at
        takers[row.org_id] = Taker(
            org_id=row.org_id,
            calls=row.calls or 0,
            needs=run_needs(
                phase=row.phase,
                categories_left=row.categories_total - row.categories_done,
                products_per_category=row.products_per_category,
                products_found=row.products_found,
                products_searched=row.products_searched,
            ),
            cap=terms.cap(row.daily_calls),
            seconds_per_call=row.seconds_per_call,
            waiting_until=row.resumes_at,
        )
    me = takers.pop(org_id, None)
    last_call_at = last_calls.get(org_id)
    if me is None:  # no run of its own waits for calls (the estimate of one not started)
        own = (
            await session.execute(
                sa.select(
                    counts.calls, counts.seconds_per_call, counts.last_call_at, caps.daily_calls
                )
                .select_from(Organization)
                .outerjoin(counts, today & (counts.org_id == Organization.id))
                .outerjoin(
                    caps, (caps.org_id == Organization.id) & (caps.provider == terms.provider)
                )
                .where(Organization.id == org_id)
            )
        ).one_or_none()
        calls, pace, last_call_at, own_cap = own or (None, None, None, None)  # None: deleted
        me = Taker(org_id, calls or 0, needs=1, cap=terms.cap(own_cap), seconds_per_call=pace)
    others = sorted(takers.values(), key=lambda t: t.calls)
    return ShareStatus(terms, used, me, others, last_call_at=last_call_at)


async def _count_for_org(
    session: AsyncSession, terms: BudgetTerms, status: ShareStatus, now: datetime
) -> None:
    """Count one call in the organization's share of the day, and update its pace."""
    day, me = terms.day(now), status.mine
    pace, previous = me.seconds_per_call, status.last_call_at
    if previous is not None and now - previous <= PACE_GAP:
        interval = max(0.0, (now - previous).total_seconds())
        if pace is None:
            pace = interval
        else:  # a wait for its turn is not its pace: an interval counts for 3 at most
            pace += PACE_WEIGHT * (min(interval, PACE_OUTLIER * pace) - pace)
    table = ORG_COUNTS
    insert = dialect_insert(session.get_bind().dialect.name, table)
    await session.execute(
        insert.values(
            provider=terms.provider, day=day, org_id=me.org_id, calls=1, last_call_at=now
        ).on_conflict_do_update(
            index_elements=[table.c.provider, table.c.day, table.c.org_id],
            set_={"calls": table.c.calls + 1, "last_call_at": now, "seconds_per_call": pace},
        )
    )
