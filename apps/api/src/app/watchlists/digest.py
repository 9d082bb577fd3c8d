"""The digest of a run: what changed since the run it is compared with that a member wants
to hear about, and each member's preferences for it.

A digest has four sections, each a filter of the run's changes (`app.runs.changes`):
new sellers ranked in the member's top N; watched sellers that appeared (new sellers),
vanished (gone sellers) or moved at least the member's threshold of places (movers).

What every member's digest is made of is read once per run (`RunNews`): the run's top
ranks (as many as the largest top N asked for) and the watched sellers in either run. For
finished runs both are index probes, cheaper than the changes' own sections; a run still
going has no stored ranks, and its whole ranking is read once, as the changes' movers do.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.database import insert_ignoring_conflicts
from app.runs.changes import (
    NotComparableError,
    SellerChange,
    movement_order,
    ranking,
    run_to_compare,
)
from app.runs.results import check_kept, previous_completed_run
from app.runs.sellers import ranking_order
from app.tables import CollectionRun, RunSeller
from app.watchlists.tables import (
    DEFAULT_RANK_THRESHOLD,
    DEFAULT_TOP_N,
    DigestPreference,
    WatchedSeller,
)


@dataclass(frozen=True, slots=True)
class Preferences:
    """A member's digest preferences in one organization."""

    subscribed: bool = False
    top_n: int = DEFAULT_TOP_N
    rank_threshold: int = DEFAULT_RANK_THRESHOLD
    updated_at: datetime | None = None
    """None while the member has never changed them (the defaults)."""


async def preferences(
    session: AsyncSession, *, org_id: uuid.UUID, user_id: uuid.UUID
) -> Preferences:
    """The member's preferences, or the defaults (not subscribed) when never set."""
    row = await session.get(DigestPreference, (org_id, user_id))
    return _preferences(row) if row is not None else Preferences()


async def update_preferences(
    session: AsyncSession,
    *,
    org_id: uuid.UUID,
    user_id: uuid.UUID,
    subscribed: bool | None = None,
    top_n: int | None = None,
    rank_threshold: int | None = None,
) -> Preferences:
    """Change the preferences given (None: keep), creating them from the defaults first."""
    defaults = Preferences()
    await session.execute(
        insert_ignoring_conflicts(session, DigestPreference, index_elements=["org_id", "user_id"]),
        {
            "org_id": org_id,
            "user_id": user_id,
            "subscribed": defaults.subscribed,
            "top_n": defaults.top_n,
            "rank_threshold": defaults.rank_threshold,
        },
    )
    changes = {
        name: value
        for name, value in (
            ("subscribed", subscribed),
            ("top_n", top_n),
            ("rank_threshold", rank_threshold),
        )
        if value is not None
    }
    row = await session.get(DigestPreference, (org_id, user_id), populate_existing=True)
    assert row is not None  # inserted above, or there already
    for name, value in changes.items():
        setattr(row, name, value)
    await session.flush()
    return _preferences(row)


def _preferences(row: DigestPreference) -> Preferences:
    return Preferences(row.subscribed, row.top_n, row.rank_threshold, row.updated_at)


@dataclass(frozen=True, slots=True)
class Digest:
    """A run's digest for one member's preferences."""

    run: CollectionRun
    against: CollectionRun | None
    note: str | None
    """Why there is nothing to compare with (None when `against` is set)."""
    preferences: Preferences
    new_in_top: list[SellerChange]
    watched_appeared: list[SellerChange]
    watched_vanished: list[SellerChange]
    watched_moved: list[SellerChange]

    @property
    def empty(self) -> bool:
        """Whether no section has anything to tell."""
        return not (
            self.new_in_top or self.watched_appeared or self.watched_vanished or self.watched_moved
        )


@dataclass(frozen=True, slots=True)
class RunNews:
    """What every member's digest of a run is made of: the new sellers among the run's top
    ranks, and each watched seller in either run."""

    run: CollectionRun
    against: CollectionRun | None
    note: str | None
    top_n: int
    new_in_top: list[SellerChange]
    watched: list[SellerChange]

    def digest_for(self, wanted: Preferences) -> Digest:
        """The digest these preferences ask for (their top N at most this news's)."""
        assert wanted.top_n <= self.top_n or self.against is None, "read with a larger top_n"
        watched = self.watched
        return Digest(
            run=self.run,
            against=self.against,
            note=self.note,
            preferences=wanted,
            new_in_top=[c for c in self.new_in_top if (c.rank or 0) <= wanted.top_n],
            watched_appeared=sorted(
                (c for c in watched if c.against_rank is None), key=lambda c: c.rank or 0
            ),
            watched_vanished=sorted(
                (c for c in watched if c.rank is None), key=lambda c: c.against_rank or 0
            ),
            watched_moved=sorted(
                (
                    c
                    for c in watched
                    if c.rank_change is not None and abs(c.rank_change) >= wanted.rank_threshold
                ),
                key=movement_order,
            ),
        )


async def run_digest(session: AsyncSession, run: CollectionRun, *, user_id: uuid.UUID) -> Digest:
    """The run's digest for one member, with their preferences (read as that member)."""
    wanted = await preferences(session, org_id=run.org_id, user_id=user_id)
    news = await run_news(session, run, top_n=wanted.top_n)
    return news.digest_for(wanted)


async def run_news(session: AsyncSession, run: CollectionRun, *, top_n: int) -> RunNews:
    """The run's news for digests of up to `top_n` top ranks, compared with the run's
    default comparison (the previous completed run of its preset); none when there is no
    run to compare with (`note` says why)."""
    check_kept(run)
    against, note = await _compared_with(session, run)
    if against is None:
        return RunNews(run, None, note, top_n, [], [])
    top = await _top(session, run.id, top_n)
    in_against = await _present(session, against.id, [change.username for change in top])
    names = list(
        await session.scalars(
            sa.select(WatchedSeller.username).where(WatchedSeller.org_id == run.org_id)
        )
    )
    now = await _figures(session, run, names)
    then = await _figures(session, against, names)
    none = (None, None, None)
    watched = [
        SellerChange(name, *now.get(name, none), *then.get(name, none))
        for name in sorted(now.keys() | then.keys())
    ]
    new_in_top = [change for change in top if change.username not in in_against]
    return RunNews(run, against, None, top_n, new_in_top, watched)


async def _compared_with(
    session: AsyncSession, run: CollectionRun
) -> tuple[CollectionRun | None, str | None]:
    """The run to compare with, or None and why there is none."""
    previous = await previous_completed_run(session, run)
    if previous is None:
        source = "preset" if run.preset_id else "categories"
        return None, (
            f"no earlier completed run of the same {source} to compare with: "
            "the digest starts with the next run"
        )
    try:
        return await run_to_compare(session, run, previous), None
    except NotComparableError as exc:
        return None, exc.message


async def _top(session: AsyncSession, run_id: uuid.UUID, top_n: int) -> list[SellerChange]:
    """The run's first `top_n` sellers: a range of the ranking's index."""
    rows = await session.execute(
        sa.select(RunSeller.username, RunSeller.products, RunSeller.listings)
        .where(RunSeller.run_id == run_id)
        .order_by(*ranking_order())
        .limit(top_n)
    )
    return [
        SellerChange(name, rank, products, listings, None, None, None)
        for rank, (name, products, listings) in enumerate(rows, start=1)
    ]


async def _present(session: AsyncSession, run_id: uuid.UUID, usernames: list[str]) -> set[str]:
    """Which of `usernames` the run has (primary-key probes)."""
    if not usernames:
        return set()
    rows = await session.scalars(
        sa.select(RunSeller.username).where(
            RunSeller.run_id == run_id, RunSeller.username.in_(usernames)
        )
    )
    return set(rows)


async def _figures(
    session: AsyncSession, run: CollectionRun, usernames: list[str]
) -> dict[str, tuple[int, int, int]]:
    """(rank, products, listings) of those of `usernames` the run has: primary-key probes
    (the watchlist is bounded), the ranks stored when the run finished; a run still going
    is ranked here, whole, once."""
    if not usernames:
        return {}
    rows = (
        await session.execute(
            sa.select(
                RunSeller.username, RunSeller.rank, RunSeller.products, RunSeller.listings
            ).where(RunSeller.run_id == run.id, RunSeller.username.in_(usernames))
        )
    ).all()
    stored = {name: (rank, products, n) for name, rank, products, n in rows if rank is not None}
    if len(stored) == len(rows):
        return stored
    live = await ranking(session, run.id)
    return {name: live[name] for name, *_ in rows}
