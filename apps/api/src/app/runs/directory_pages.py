"""Reading the seller directory (app.runs.directory): the organization's sellers, searched,
sorted and paged by keyset over one index per order; and one seller's history per preset
with its current listings."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, get_args

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import INVALID_CURSOR, decode_keyset, encode_keyset
from app.directory_tables import DIRECTORY_ALL, DirectoryScope, DirectorySeller
from app.errors import InvalidError, NotFoundError
from app.presets import PresetNotFoundError
from app.runs.directory import Trend, scope_of, trend
from app.runs.results import AnySelect, money
from app.tables import (
    CategoryPreset,
    CollectionRun,
    RunListing,
    RunProduct,
    RunSeller,
    RunStatus,
)

DirectorySort = Literal["last_seen", "first_seen", "runs_seen", "rank", "products", "username"]
DIRECTORY_SORTS: tuple[DirectorySort, ...] = get_args(DirectorySort)
USERNAME_LENGTH = 100
"""The longest username (run_listings.seller_username)."""

DESCENDING_BY_DEFAULT = frozenset({"last_seen", "first_seen", "runs_seen", "products"})
"""Dates newest first and counts most first; rank best first and names from A."""

_D = DirectorySeller
# Each order ascending, as (column, ascending) with its tie-breakers; descending is its exact
# reverse, so one index (tables.py) serves both directions.
ORDERS: dict[DirectorySort, tuple[tuple[Any, bool], ...]] = {
    "last_seen": ((_D.last_seen_at, True), (_D.last_rank, False), (_D.username, False)),
    "first_seen": ((_D.first_seen_at, True), (_D.last_rank, False), (_D.username, False)),
    "runs_seen": ((_D.runs_seen, True), (_D.last_rank, False), (_D.username, False)),
    "products": ((_D.last_products, True), (_D.last_rank, False), (_D.username, False)),
    "rank": ((_D.last_rank, True), (_D.last_seen_at, False), (_D.username, True)),
    "username": ((_D.username, True),),
}
LISTINGS_SHOWN = 500
"""At most this many of a seller's current listings are returned (`total` says how many)."""


class SellerNotFoundError(NotFoundError):
    """None of the organization's completed runs saw this seller."""

    def __init__(self, username: str) -> None:
        super().__init__(f"seller {username} not found")
        self.username = username


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """A seller across the runs of a scope: when and how often seen, where it stands now."""

    username: str
    first_seen_at: datetime
    last_seen_at: datetime
    runs_seen: int
    last_run_id: uuid.UUID
    last_preset_id: uuid.UUID | None
    rank: int
    products: int
    listings: int
    trend: Trend | None


_ENTRY_COLUMNS = (
    _D.username,
    _D.first_seen_at,
    _D.last_seen_at,
    _D.runs_seen,
    _D.last_run_id,
    DirectoryScope.preset_id,
    _D.last_rank,
    _D.last_products,
    _D.last_listings,
    _D.prev_run_id,
    _D.prev_rank,
    DirectoryScope.latest_run_id,
    DirectoryScope.previous_run_id,
)


def _with_state(statement: AnySelect) -> AnySelect:
    """Join each row to the state of the scope of its latest run (for its trend)."""
    return statement.outerjoin(
        DirectoryScope,
        sa.and_(DirectoryScope.org_id == _D.org_id, DirectoryScope.scope_id == _D.last_scope_id),
    )


def _entry(row: Sequence[Any]) -> DirectoryEntry:
    """A row of `_ENTRY_COLUMNS`."""
    return DirectoryEntry(
        username=row[0],
        first_seen_at=row[1],
        last_seen_at=row[2],
        runs_seen=row[3],
        last_run_id=row[4],
        last_preset_id=row[5],
        rank=row[6],
        products=row[7],
        listings=row[8],
        trend=trend(
            last_run_id=row[4],
            prev_run_id=row[9],
            last_rank=row[6],
            prev_rank=row[10],
            latest_run_id=row[11],
            previous_run_id=row[12],
        ),
    )


async def list_directory(
    session: AsyncSession,
    *,
    org_id: uuid.UUID,
    preset_id: uuid.UUID | None = None,
    query: str | None = None,
    sort: DirectorySort = "last_seen",
    descending: bool | None = None,
    cursor: str | None = None,
    limit: int,
) -> tuple[list[DirectoryEntry], str | None]:
    """A page of the organization's sellers (of one preset's runs, or of all runs): those
    whose username contains `query` regardless of case, in the order of `sort`; and the
    cursor of the next page."""
    if descending is None:
        descending = sort in DESCENDING_BY_DEFAULT
    scope_id = DIRECTORY_ALL
    if preset_id is not None:
        await _check_preset(session, org_id, preset_id)
        scope_id = preset_id
    order = [(column, ascending != descending) for column, ascending in ORDERS[sort]]
    statement = _with_state(sa.select(*_ENTRY_COLUMNS)).where(
        _D.org_id == org_id, _D.scope_id == scope_id
    )
    if query:
        # lower() on both sides; SQLite's folds ASCII letters only, all eBay usernames have
        statement = statement.where(
            sa.func.lower(_D.username).contains(query.lower(), autoescape=True)
        )
    direction = "desc" if descending else "asc"
    if cursor is not None:
        statement = statement.where(_after(order, _cursor_values(cursor, sort, direction)))
    statement = statement.order_by(
        *(column.asc() if ascending else column.desc() for column, ascending in order)
    )
    rows = (await session.execute(statement.limit(limit + 1))).all()
    entries = [_entry(row) for row in rows[:limit]]
    if len(rows) <= limit:
        return entries, None
    return entries, encode_keyset([sort, direction, *_key_of(entries[-1], sort)])


async def _check_preset(session: AsyncSession, org_id: uuid.UUID, preset_id: uuid.UUID) -> None:
    """PresetNotFoundError unless the preset is the organization's, or was (its runs keep
    it after it is deleted)."""
    known = await session.scalar(
        sa.select(
            sa.or_(
                sa.exists().where(
                    DirectoryScope.org_id == org_id, DirectoryScope.scope_id == preset_id
                ),
                sa.exists().where(CategoryPreset.org_id == org_id, CategoryPreset.id == preset_id),
                sa.exists().where(
                    CollectionRun.org_id == org_id, CollectionRun.preset_id == preset_id
                ),
            )
        )
    )
    if not known:
        raise PresetNotFoundError(preset_id)


_ENTRY_FIELDS = {"last_products": "products", "last_rank": "rank"}
"""The entry's name of a column of an order, where it differs."""


def _key_of(entry: DirectoryEntry, sort: DirectorySort) -> list[Any]:
    """The values of `sort`'s order of an entry, as a cursor holds them."""
    values = [getattr(entry, _ENTRY_FIELDS.get(c.key, c.key)) for c, _ in ORDERS[sort]]
    return [value.isoformat() if isinstance(value, datetime) else value for value in values]


def _cursor_values(cursor: str, sort: DirectorySort, direction: str) -> list[Any]:
    """The key in a cursor of this order, each value of its column's type; 400 otherwise."""
    values = decode_keyset(cursor)
    if values[:2] != [sort, direction]:
        raise InvalidError(
            "cursor belongs to another order: pass the same sort and order as the page it "
            "came from, or start again without a cursor"
        )
    key = values[2:]
    columns = [column for column, _ in ORDERS[sort]]
    if len(key) != len(columns):
        raise InvalidError(INVALID_CURSOR)
    return [_typed(column, value) for column, value in zip(columns, key, strict=True)]


def _typed(column: Any, value: Any) -> Any:
    """A cursor's value for `column`, checked; 400 when it cannot be one."""
    if column.key in ("last_seen_at", "first_seen_at") and isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return moment.astimezone(UTC)
    elif (column.key == "username" and isinstance(value, str) and len(value) <= 100) or (
        column.key in ("runs_seen", "last_products", "last_rank")
        and isinstance(value, int)
        and not isinstance(value, bool)
        and 0 <= value < 2**31
    ):
        return value
    raise InvalidError(INVALID_CURSOR)


def _after(order: list[tuple[Any, bool]], key: list[Any]) -> sa.ColumnElement[bool]:
    """Rows after `key` in `order`: a keyset condition led by a bound on the first column,
    so that the index serving the order starts from the key."""
    branches = []
    for position, (column, ascending) in enumerate(order):
        equal = [c == value for (c, _), value in zip(order[:position], key, strict=False)]
        beyond = column > key[position] if ascending else column < key[position]
        branches.append(sa.and_(*equal, beyond))
    first, ascending = order[0]
    bound = first >= key[0] if ascending else first <= key[0]
    return sa.and_(bound, sa.or_(*branches))


# --- one seller ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SellerRun:
    """A seller's figures in one run."""

    run_id: uuid.UUID
    run_name: str
    created_at: datetime
    rank: int | None
    products: int
    listings: int
    min_price: Decimal | None
    max_price: Decimal | None
    median_price: Decimal | None
    currency: str | None


@dataclass(frozen=True, slots=True)
class ScopeHistory(DirectoryEntry):
    """A seller in the runs of one preset (or category list): the directory's figures in
    them, and those runs whose results are kept, newest first."""

    preset_id: uuid.UUID | None
    preset_name: str | None
    category_ids: list[str]
    runs: list[SellerRun] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ListedProduct:
    asin: str
    title: str
    price: Decimal | None
    currency: str


@dataclass(frozen=True, slots=True)
class SellerListing:
    """One of a seller's eBay listings, with the Amazon product it was found for."""

    item_id: str
    title: str
    price: Decimal | None
    currency: str
    url: str
    product: ListedProduct


@dataclass(frozen=True, slots=True)
class CurrentListings:
    """The seller's listings in the latest run that saw it."""

    run_id: uuid.UUID
    created_at: datetime
    results_purged: bool
    total: int
    items: list[SellerListing]


@dataclass(frozen=True, slots=True)
class SellerDetail(DirectoryEntry):
    """A seller across all runs, per preset, and its current listings."""

    history: list[ScopeHistory]
    current_listings: CurrentListings


def _entry_fields(entry: DirectoryEntry) -> dict[str, Any]:
    return {name.name: getattr(entry, name.name) for name in fields(DirectoryEntry)}


async def seller_detail(session: AsyncSession, *, org_id: uuid.UUID, username: str) -> SellerDetail:
    """A seller across the organization's runs: its directory figures overall and per
    preset, each preset's runs with its figures, and its current listings.
    SellerNotFoundError when no completed run of the organization saw it."""
    rows = (
        await session.execute(
            _with_state(sa.select(_D.scope_id, *_ENTRY_COLUMNS)).where(
                _D.org_id == org_id, _D.username == username
            )
        )
    ).all()
    entries = {row[0]: _entry(row[1:]) for row in rows}
    overall = entries.pop(DIRECTORY_ALL, None)
    if overall is None:
        raise SellerNotFoundError(username)
    scopes = {
        scope.scope_id: scope
        for scope in await session.scalars(
            sa.select(DirectoryScope).where(
                DirectoryScope.org_id == org_id, DirectoryScope.scope_id.in_(entries)
            )
        )
    }
    names = dict(
        (
            await session.execute(
                sa.select(CategoryPreset.id, CategoryPreset.name).where(
                    CategoryPreset.org_id == org_id,
                    CategoryPreset.id.in_([s.preset_id for s in scopes.values() if s.preset_id]),
                )
            )
        ).all()
    )
    history: dict[uuid.UUID, ScopeHistory] = {}
    for scope_id, entry in entries.items():
        scope = scopes.get(scope_id)  # written with the row: always there
        preset_id = scope.preset_id if scope else None
        history[scope_id] = ScopeHistory(
            **_entry_fields(entry),
            preset_id=preset_id,
            preset_name=names.get(preset_id) if preset_id else None,
            category_ids=scope.category_ids if scope else [],
        )
    for scope_id, run in await _runs_of(session, org_id, username):
        if scope_id in history:
            history[scope_id].runs.append(run)
    return SellerDetail(
        **_entry_fields(overall),
        history=sorted(history.values(), key=lambda h: h.last_seen_at, reverse=True),
        current_listings=await _current_listings(session, org_id, overall.last_run_id, username),
    )


async def _runs_of(
    session: AsyncSession, org_id: uuid.UUID, username: str
) -> list[tuple[uuid.UUID, SellerRun]]:
    """The seller's figures in each completed run of the organization whose results are
    kept, newest first, each with the run's scope. Each run is one primary-key lookup."""
    rows = await session.execute(
        sa.select(
            CollectionRun.preset_id,
            CollectionRun.category_ids,
            CollectionRun.id,
            CollectionRun.name,
            CollectionRun.created_at,
            RunSeller.rank,
            RunSeller.products,
            RunSeller.listings,
            RunSeller.min_price,
            RunSeller.max_price,
            RunSeller.median_price,
            RunSeller.currency,
        )
        .join(
            RunSeller,
            sa.and_(RunSeller.run_id == CollectionRun.id, RunSeller.username == username),
        )
        .where(
            CollectionRun.org_id == org_id,
            CollectionRun.status == RunStatus.COMPLETED,
            CollectionRun.results_purged_at.is_(None),
        )
        .order_by(CollectionRun.created_at.desc(), CollectionRun.id.desc())
    )
    return [
        (
            scope_of(row[0], row[1]),
            SellerRun(
                run_id=row[2],
                run_name=row[3],
                created_at=row[4],
                rank=row[5],
                products=row[6],
                listings=row[7],
                min_price=money(row[8]),
                max_price=money(row[9]),
                median_price=money(row[10]),
                currency=row[11],
            ),
        )
        for row in rows
    ]


async def _current_listings(
    session: AsyncSession, org_id: uuid.UUID, run_id: uuid.UUID, username: str
) -> CurrentListings:
    """The seller's listings in `run_id` (the latest run that saw it), in the order of the
    run's products, at most LISTINGS_SHOWN of them."""
    run = await session.scalar(
        sa.select(CollectionRun).where(CollectionRun.org_id == org_id, CollectionRun.id == run_id)
    )
    if run is None:  # the directory keeps no row of a run that is not the organization's
        raise SellerNotFoundError(username)
    if run.results_purged_at is not None:
        return CurrentListings(run.id, run.created_at, True, 0, [])
    mine = sa.and_(RunListing.run_id == run.id, RunListing.seller_username == username)
    total = await session.scalar(sa.select(sa.func.count()).select_from(RunListing).where(mine))
    rows = await session.execute(
        sa.select(
            RunListing.item_id,
            RunListing.title,
            RunListing.price,
            RunListing.currency,
            RunListing.url,
            RunProduct.asin,
            RunProduct.title,
            RunProduct.price,
            RunProduct.currency,
        )
        .join(
            RunProduct,
            sa.and_(RunProduct.run_id == RunListing.run_id, RunProduct.asin == RunListing.asin),
        )
        .where(mine)
        .order_by(
            RunProduct.category_position,
            RunProduct.sales_rank,
            RunProduct.asin,
            RunListing.item_id,
        )
        .limit(LISTINGS_SHOWN)
    )
    items = [
        SellerListing(
            item_id=row[0],
            title=row[1],
            price=money(row[2]),
            currency=row[3],
            url=row[4],
            product=ListedProduct(asin=row[5], title=row[6], price=money(row[7]), currency=row[8]),
        )
        for row in rows
    ]
    return CurrentListings(run.id, run.created_at, False, total or 0, items)
