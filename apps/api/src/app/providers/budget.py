"""Daily call budgets of a provider: counted in this process, or shared through the database.

A budget allows `limit` calls per provider day (a day in the provider's time zone: eBay's
limits roll over at midnight US Pacific time). `take()` counts one call before it is sent,
or raises `QuotaExhaustedError` with the start of the next day, so a run waits for the new
day instead of failing or hammering the provider.

`SharedDailyCallBudget` is what the service uses: every instance (replicas, and the same
one after a restart) counts against one row per provider and day (which `providers check`
reads), with one atomic statement per call — `INSERT … ON CONFLICT DO UPDATE SET
calls = calls + 1 WHERE calls < limit RETURNING calls` — so concurrent instances can
never take more than the limit between them. `DailyCallBudget` counts in memory, for a
client used on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Final, Protocol, cast
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from app.core.clock import Clock, utcnow
from app.core.database import Database, dialect_insert
from app.providers.base import EbayProvider, Listing, Product, QuotaExhaustedError
from app.tables import ProviderCallCount

PACIFIC: Final = ZoneInfo("America/Los_Angeles")
CALL_COUNTS: Final = cast(sa.Table, ProviderCallCount.__table__)


def next_midnight(now: datetime, zone: ZoneInfo = PACIFIC) -> datetime:
    """The next midnight in `zone` after `now`, in UTC."""
    local = now.astimezone(zone)
    midnight = datetime.combine(local.date() + timedelta(days=1), time(), zone)
    return midnight.astimezone(UTC)


class CallBudget(Protocol):
    """At most `limit` calls a day."""

    @property
    def limit(self) -> int: ...

    async def take(self) -> None:
        """Count one call, or raise QuotaExhaustedError when today's budget is spent."""

    async def used(self) -> int:
        """Calls counted today."""


class _Budget:
    def __init__(self, limit: int, *, provider: str, setting: str, label: str) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self._limit = limit
        self.provider = provider
        self.setting = setting
        self.label = label

    @property
    def limit(self) -> int:
        return self._limit

    def _spent(self, resets_at: datetime, where: str) -> QuotaExhaustedError:
        return QuotaExhaustedError(
            f"{self.label} daily call budget of {self._limit} spent{where} ({self.setting}); "
            f"continuing at {resets_at:%Y-%m-%d %H:%M} UTC",
            provider=self.provider,
            resume_at=resets_at,
            limit=f"this service's daily {self.label} call budget ({self.setting}={self._limit})",
        )


class DailyCallBudget(_Budget):
    """A daily budget counted in this process only (each process counts on its own)."""

    def __init__(
        self,
        limit: int,
        *,
        provider: str,
        setting: str,
        label: str,
        clock: Clock = utcnow,
        next_reset: Callable[[datetime], datetime] = next_midnight,
    ) -> None:
        super().__init__(limit, provider=provider, setting=setting, label=label)
        self._clock = clock
        self._next_reset = next_reset
        self._used = 0
        self._resets_at: datetime | None = None

    async def take(self) -> None:
        resets_at = self._roll_over()
        if self._used >= self._limit:
            raise self._spent(resets_at, "")
        self._used += 1

    async def used(self) -> int:
        self._roll_over()
        return self._used

    def _roll_over(self) -> datetime:
        now = self._clock()
        if self._resets_at is None or now >= self._resets_at:
            self._used = 0
            self._resets_at = self._next_reset(now)
        return self._resets_at


class SharedDailyCallBudget(_Budget):
    """A daily budget shared by every instance on one database (`provider_call_counts`)."""

    def __init__(
        self,
        database: Database,
        limit: int,
        *,
        provider: str,
        setting: str,
        label: str,
        zone: ZoneInfo = PACIFIC,
        clock: Clock = utcnow,
    ) -> None:
        super().__init__(limit, provider=provider, setting=setting, label=label)
        self._database = database
        self._zone = zone
        self._clock = clock

    def day(self, now: datetime) -> date:
        """The provider day `now` falls in."""
        return now.astimezone(self._zone).date()

    async def take(self) -> None:
        now = self._clock()
        table = CALL_COUNTS
        insert = dialect_insert(self._database.dialect, table)
        statement = (
            insert.values(provider=self.provider, day=self.day(now), calls=1, updated_at=now)
            .on_conflict_do_update(
                index_elements=[table.c.provider, table.c.day],
                set_={"calls": table.c.calls + 1, "updated_at": insert.excluded.updated_at},
                where=table.c.calls < self._limit,
            )
            .returning(table.c.calls)
        )
        async with self._database.transaction() as session:
            counted = (await session.execute(statement)).scalar_one_or_none()
        if counted is None:
            raise self._spent(next_midnight(now, self._zone), " by all instances")

    async def used(self) -> int:
        table = CALL_COUNTS
        query = sa.select(table.c.calls).where(
            table.c.provider == self.provider, table.c.day == self.day(self._clock())
        )
        async with self._database.read() as session:
            return (await session.execute(query)).scalar_one_or_none() or 0


class BudgetedEbayProvider:
    """An eBay provider that counts no calls of its own (the sample), each of whose searches
    is first counted as one call of `budget`: the sample standing in for eBay's budget."""

    def __init__(self, inner: EbayProvider, budget: CallBudget) -> None:
        self.inner = inner
        self.budget = budget
        self.name = inner.name

    async def search(
        self, product: Product, limit: int, *, as_of: datetime | None = None
    ) -> list[Listing]:
        """`inner`'s listings of `product`, once the budget has counted the call."""
        await self.budget.take()
        return await self.inner.search(product, limit, as_of=as_of)
