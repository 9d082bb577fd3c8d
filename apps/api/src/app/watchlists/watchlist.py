"""The organization's watchlist: sellers its members star, watched for all of them."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.database import insert_ignoring_conflicts
from app.core.pagination import PageParams, decode_offset, encode_offset
from app.errors import ConflictError, NotFoundError
from app.tables import CollectionRun, RunSeller, RunStatus, User
from app.watchlists.tables import WatchedSeller

MAX_WATCHED = 1000
"""Sellers one organization may watch: bounds the work and the length of every digest."""


class NotWatchedError(NotFoundError):
    """The seller is not on the organization's watchlist."""

    def __init__(self, username: str) -> None:
        super().__init__(f"seller {username} not found on the watchlist")
        self.username = username


class WatchlistFullError(ConflictError):
    """The organization watches as many sellers as it may."""

    def __init__(self, username: str) -> None:
        super().__init__(
            f"the watchlist already holds {MAX_WATCHED} sellers, the most it may: "
            f"unstar one before starring {username!r}"
        )
        self.username = username


@dataclass(frozen=True, slots=True)
class LastSeen:
    """A seller in the latest completed run (results kept) of the organization that saw it."""

    run_id: uuid.UUID
    run_name: str
    created_at: datetime
    rank: int | None
    products: int
    listings: int


@dataclass(frozen=True, slots=True)
class WatchedEntry:
    """A watched seller: who starred it and when, and where runs last saw it."""

    username: str
    starred_by: str | None
    """The email of the member who starred it; None once that user is gone."""
    starred_at: datetime
    last_seen: LastSeen | None


async def star(
    session: AsyncSession, *, org_id: uuid.UUID, username: str, user_id: uuid.UUID
) -> tuple[WatchedEntry, bool]:
    """Watch `username`; the entry and whether it is new. Starring a watched seller again
    changes nothing (the first star's member and time stay)."""
    key = (WatchedSeller.org_id == org_id, WatchedSeller.username == username)
    created = False
    if await session.scalar(sa.select(WatchedSeller.username).where(*key)) is None:
        watched = await session.scalar(
            sa.select(sa.func.count()).select_from(WatchedSeller).where(key[0])
        )
        if (watched or 0) >= MAX_WATCHED:
            raise WatchlistFullError(username)
        insert = insert_ignoring_conflicts(
            session, WatchedSeller, index_elements=["org_id", "username"]
        )
        inserted = await session.execute(
            insert,
            {"org_id": org_id, "username": username, "starred_by": user_id},
        )
        created = inserted.rowcount == 1  # type: ignore[attr-defined]
    (entry,) = await _entries(session, org_id, sa.and_(*key))
    return entry, created


async def unstar(session: AsyncSession, *, org_id: uuid.UUID, username: str) -> None:
    """Stop watching `username`; NotWatchedError when it is not watched."""
    deleted = await session.execute(
        sa.delete(WatchedSeller).where(
            WatchedSeller.org_id == org_id, WatchedSeller.username == username
        )
    )
    if deleted.rowcount == 0:  # type: ignore[attr-defined]
        raise NotWatchedError(username)


async def list_watchlist(
    session: AsyncSession, *, org_id: uuid.UUID, page: PageParams
) -> tuple[list[WatchedEntry], str | None]:
    """The watchlist, newest star first (by name among stars of the same moment)."""
    offset = decode_offset(page.cursor)
    entries = await _entries(
        session, org_id, sa.true(), offset=offset, limit=page.limit + 1, newest_first=True
    )
    more = len(entries) > page.limit
    entries = entries[: page.limit]
    return entries, encode_offset(offset + len(entries)) if more else None


async def watched_among(
    session: AsyncSession, *, org_id: uuid.UUID, usernames: Collection[str]
) -> set[str]:
    """Which of `usernames` the organization watches (a page of sellers to mark)."""
    if not usernames:
        return set()
    rows = await session.scalars(
        sa.select(WatchedSeller.username).where(
            WatchedSeller.org_id == org_id, WatchedSeller.username.in_(list(usernames))
        )
    )
    return set(rows)


async def _entries(
    session: AsyncSession,
    org_id: uuid.UUID,
    condition: sa.ColumnElement[bool],
    *,
    offset: int = 0,
    limit: int | None = None,
    newest_first: bool = False,
) -> list[WatchedEntry]:
    statement = (
        sa.select(WatchedSeller.username, User.email, WatchedSeller.starred_at)
        .outerjoin(User, User.id == WatchedSeller.starred_by)
        .where(WatchedSeller.org_id == org_id, condition)
    )
    if newest_first:
        statement = statement.order_by(
            WatchedSeller.starred_at.desc(), WatchedSeller.username
        ).offset(offset)
    rows = (await session.execute(statement.limit(limit))).all()
    seen = await last_seen(session, org_id=org_id, usernames=[row[0] for row in rows])
    return [WatchedEntry(name, email, at, seen.get(name)) for name, email, at in rows]


async def last_seen(
    session: AsyncSession, *, org_id: uuid.UUID, usernames: Sequence[str]
) -> dict[str, LastSeen]:
    """Each seller's figures in the latest completed run (results kept) that saw it.

    One statement for a page of sellers: for each of the organization's completed runs,
    a primary-key probe of `run_sellers` per name, and the newest run per name kept."""
    if not usernames:
        return {}
    recency = sa.func.row_number().over(
        partition_by=RunSeller.username,
        order_by=(CollectionRun.created_at.desc(), CollectionRun.id.desc()),
    )
    seen = (
        sa.select(
            RunSeller.username,
            CollectionRun.id,
            CollectionRun.name,
            CollectionRun.created_at,
            RunSeller.rank,
            RunSeller.products,
            RunSeller.listings,
            recency.label("recency"),
        )
        .join(CollectionRun, CollectionRun.id == RunSeller.run_id)
        .where(
            CollectionRun.org_id == org_id,
            # Through a function, so that SQLite (without statistics) reads the
            # organization's runs by its index, not every organization's completed runs
            # by the index on status.
            sa.func.coalesce(CollectionRun.status, "") == RunStatus.COMPLETED.value,
            CollectionRun.results_purged_at.is_(None),
            RunSeller.username.in_(list(usernames)),
        )
        .subquery("seen")
    )
    rows = await session.execute(
        sa.select(*[column for column in seen.c if column.name != "recency"]).where(
            seen.c.recency == 1
        )
    )
    return {row[0]: LastSeen(*row[1:]) for row in rows}
