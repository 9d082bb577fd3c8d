"""The seller directory: every seller an organization's completed runs saw, kept as runs
complete so that a page of it reads a few rows of an index, whatever the number of runs.

Aggregating `run_sellers` of all the organization's runs per request (500,000 rows for
100,000 sellers across 200 runs) costs 0.3-1 s, and more with ranks and trends
(bench/seller_directory.py). Instead, the transaction that completes a run adds its
sellers to `seller_directory` (`record_run`), one row per seller and **scope**:

- each preset is a scope (`scope_id` = the preset's id); runs of a category list without a
  preset form one scope per list (`scope_id` derived from the list, as
  `previous_completed_run` compares them);
- `DIRECTORY_ALL` counts every completed run of the organization.

Only completed runs count: failed runs stop part-way and cancelled ones never finished.
A row holds the first and last time the seller was seen (the creation times of the runs),
the number of runs that saw it, and its rank, products and listings in the latest run that
saw it (`last_*`) and in the one before that (`prev_*`), in the scope. The all-runs row
copies `last_*` and `prev_*` from the scope of the latest run that saw the seller.

Every change is commutative: counts add up, first and last seen are a minimum and a
maximum, and the last two sightings are the greatest two by (creation time, run id) — so
runs recorded in any order, or concurrently on several replicas, leave the same rows.
Rows are written in username order, so two transactions recording runs of different
presets lock shared rows in the same order and cannot deadlock. A run is recorded once,
in the transaction that completes it: the conditional update that completes it (it
happens once, fenced by the run's lease) sets `collection_runs.directory_recorded_at`.

**Trend** of a seller in a scope, against the scope's latest completed run L and the one
before it P (`seller_directory_scopes`): `new` when it is in L but not in P (or L is the
scope's first run), `up` / `down` / `same` when it is in both and its rank in L is better /
worse / equal, `gone` when it is in P but not in L, and none (null) when it is in neither.
The all-runs row's trend is its trend in the scope of the latest run that saw it. Trends
are worked out when read, from a row's last two sightings and its scope's latest two runs:
a seller that a new run did not see needs no write to become `gone`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.database import dialect_insert
from app.directory_tables import DIRECTORY_ALL, DirectoryScope, DirectorySeller
from app.tables import (
    CollectionRun,
    RunSeller,
)

Trend = Literal["up", "down", "same", "new", "gone"]

_CATEGORY_LISTS = uuid.UUID("6f1c2d1e-8a4b-5c3d-9e7f-0a1b2c3d4e5f")
"""Namespace of the scope ids of category lists (UUID version 5 of the list)."""

_SELLERS: sa.Table = DirectorySeller.__table__  # type: ignore[assignment]
_SCOPES: sa.Table = DirectoryScope.__table__  # type: ignore[assignment]


def scope_of(preset_id: uuid.UUID | None, category_ids: list[str]) -> uuid.UUID:
    """The directory scope of a run: its preset, or else its exact category list."""
    if preset_id is not None:
        return preset_id
    return uuid.uuid5(_CATEGORY_LISTS, json.dumps(list(category_ids)))


def trend(
    *,
    last_run_id: uuid.UUID,
    prev_run_id: uuid.UUID | None,
    last_rank: int,
    prev_rank: int | None,
    latest_run_id: uuid.UUID | None,
    previous_run_id: uuid.UUID | None,
) -> Trend | None:
    """A seller's trend (see the module's docstring) from its last two sightings in a
    scope and that scope's latest two runs."""
    if last_run_id == latest_run_id:
        if previous_run_id is None or prev_run_id != previous_run_id or prev_rank is None:
            return "new"
        if last_rank < prev_rank:
            return "up"
        return "down" if last_rank > prev_rank else "same"
    if previous_run_id is not None and last_run_id == previous_run_id:
        return "gone"
    return None


@dataclass(frozen=True, slots=True)
class CompletedRun:
    """A run that completes in the current transaction, as the directory records it."""

    id: uuid.UUID
    org_id: uuid.UUID
    preset_id: uuid.UUID | None
    category_ids: list[str]
    created_at: datetime


COMPLETED_RUN_COLUMNS = (
    CollectionRun.id,
    CollectionRun.org_id,
    CollectionRun.preset_id,
    CollectionRun.category_ids,
    CollectionRun.created_at,
)
"""The columns of a run that `CompletedRun` holds, read in the transaction completing it."""


async def record_run(session: AsyncSession, run: CompletedRun) -> None:
    """Add the sellers of a run completing in this transaction to its organization's
    directory, after `sellers.finish` ranked them.

    Once per run: call it in the transaction whose conditional update completes the run
    (and sets `directory_recorded_at`), as the pipeline's finish does; that update
    happens once. The run's row is not updated again here on purpose: on PostgreSQL, a
    second update of a row the transaction already changed re-checks its foreign keys
    (FOR KEY SHARE of its schedule), which deadlocked with a scheduler firing that
    schedule while waiting for this transaction's run to leave the active statuses."""
    scope_id = scope_of(run.preset_id, run.category_ids)
    dialect = session.get_bind().dialect.name
    bound = _Run(run.org_id, scope_id, run.id, run.created_at)
    await session.execute(_record_in_scope_state(dialect, bound, run.preset_id, run.category_ids))
    await session.execute(_record_in_scope(dialect, bound))
    await session.execute(_record_in_all(dialect, bound))


class _Run:
    """The run being recorded, as bound parameters of the statements."""

    def __init__(
        self, org_id: uuid.UUID, scope_id: uuid.UUID, run_id: uuid.UUID, created_at: datetime
    ) -> None:
        seller = _SELLERS.c
        self.org_id = sa.literal(org_id, seller.org_id.type)
        self.scope_id = sa.literal(scope_id, seller.scope_id.type)
        self.run_id = sa.literal(run_id, seller.last_run_id.type)
        self.created_at = sa.literal(created_at, seller.last_seen_at.type)
        self.ids = org_id, scope_id, run_id


def _later(
    at: sa.ColumnElement[Any],
    run_id: sa.ColumnElement[Any],
    than_at: sa.ColumnElement[Any],
    than_run_id: sa.ColumnElement[Any],
) -> sa.ColumnElement[bool]:
    """Whether a run comes after another, by creation time then id (the order of
    `previous_completed_run`)."""
    return sa.tuple_(at, run_id) > sa.tuple_(than_at, than_run_id)


def _record_in_scope_state(
    dialect: str, run: _Run, preset_id: uuid.UUID | None, category_ids: list[str]
) -> sa.Insert:
    """Count the run in its scope, and keep the scope's latest two runs."""
    org_id, scope_id, run_id = run.ids
    insert = dialect_insert(dialect, _SCOPES).values(
        org_id=org_id,
        scope_id=scope_id,
        preset_id=preset_id,
        category_ids=category_ids,
        runs=1,
        latest_run_id=run_id,
        latest_run_at=run.created_at,
        previous_run_id=None,
        previous_run_at=None,
    )
    new, scope = insert.excluded, _SCOPES.c
    latest = _later(new.latest_run_at, new.latest_run_id, scope.latest_run_at, scope.latest_run_id)
    second = sa.or_(
        scope.previous_run_id.is_(None),
        _later(new.latest_run_at, new.latest_run_id, scope.previous_run_at, scope.previous_run_id),
    )
    return insert.on_conflict_do_update(
        index_elements=["org_id", "scope_id"],
        set_={
            "runs": scope.runs + 1,
            "category_ids": sa.case((latest, new.category_ids), else_=scope.category_ids),
            "latest_run_id": sa.case((latest, new.latest_run_id), else_=scope.latest_run_id),
            "latest_run_at": sa.case((latest, new.latest_run_at), else_=scope.latest_run_at),
            "previous_run_id": sa.case(
                (latest, scope.latest_run_id),
                (second, new.latest_run_id),
                else_=scope.previous_run_id,
            ),
            "previous_run_at": sa.case(
                (latest, scope.latest_run_at),
                (second, new.latest_run_at),
                else_=scope.previous_run_at,
            ),
        },
    )


_COLUMNS = [
    "org_id",
    "scope_id",
    "username",
    "first_seen_at",
    "last_seen_at",
    "runs_seen",
    "last_scope_id",
    "last_run_id",
    "last_rank",
    "last_products",
    "last_listings",
    "prev_run_id",
    "prev_seen_at",
    "prev_rank",
]
_LAST = ["last_seen_at", "last_run_id", "last_rank", "last_products", "last_listings"]
_PREV = {"prev_seen_at": "last_seen_at", "prev_run_id": "last_run_id", "prev_rank": "last_rank"}


def _record_in_scope(dialect: str, run: _Run) -> sa.Insert:
    """Each seller of the run in its scope: one more run, and the run among its last two
    sightings if it is one of them."""
    rows = (
        sa.select(
            run.org_id,
            run.scope_id,
            RunSeller.username,
            run.created_at,
            run.created_at,
            sa.literal(1),
            run.scope_id,
            run.run_id,
            RunSeller.rank,
            RunSeller.products,
            RunSeller.listings,
            sa.null(),
            sa.null(),
            sa.null(),
        )
        .where(RunSeller.run_id == run.run_id)
        .order_by(RunSeller.username)
    )
    insert = dialect_insert(dialect, _SELLERS).from_select(_COLUMNS, rows)
    new, seller = insert.excluded, _SELLERS.c
    latest = _later(new.last_seen_at, new.last_run_id, seller.last_seen_at, seller.last_run_id)
    second = sa.or_(
        seller.prev_run_id.is_(None),
        _later(new.last_seen_at, new.last_run_id, seller.prev_seen_at, seller.prev_run_id),
    )
    changes: dict[str, Any] = {
        "runs_seen": seller.runs_seen + 1,
        "first_seen_at": _earlier_of(new.first_seen_at, seller.first_seen_at),
    }
    for name in _LAST:
        changes[name] = sa.case((latest, new[name]), else_=seller[name])
    for name, last in _PREV.items():
        changes[name] = sa.case((latest, seller[last]), (second, new[last]), else_=seller[name])
    return insert.on_conflict_do_update(
        index_elements=["org_id", "scope_id", "username"], set_=changes
    )


def _earlier_of(new: Any, current: Any) -> sa.ColumnElement[Any]:
    return sa.case((new < current, new), else_=current)


def _record_in_all(dialect: str, run: _Run) -> sa.Insert:
    """Each seller of the run among all runs: one more run, and its latest sighting (with
    the one before it in the same scope) copied from the scope row just written when that
    row's latest sighting is the latest of all."""
    scoped = sa.alias(_SELLERS, "scoped")
    rows = (
        sa.select(
            scoped.c.org_id,
            sa.literal(DIRECTORY_ALL, _SELLERS.c.scope_id.type),
            scoped.c.username,
            run.created_at,
            *(scoped.c[name] for name in _COLUMNS[4:5]),
            sa.literal(1),
            *(scoped.c[name] for name in _COLUMNS[6:]),
        )
        .select_from(RunSeller)
        .join(
            scoped,
            sa.and_(
                scoped.c.org_id == run.org_id,
                scoped.c.scope_id == run.scope_id,
                scoped.c.username == RunSeller.username,
            ),
        )
        .where(RunSeller.run_id == run.run_id)  # the run's sellers, each found by key
        .order_by(RunSeller.username)
    )
    insert = dialect_insert(dialect, _SELLERS).from_select(_COLUMNS, rows)
    new, seller = insert.excluded, _SELLERS.c
    # The same sighting (a tie) comes from the same scope row, whose `prev_*` may just
    # have changed: take it.
    latest = sa.not_(
        _later(seller.last_seen_at, seller.last_run_id, new.last_seen_at, new.last_run_id)
    )
    changes: dict[str, Any] = {
        "runs_seen": seller.runs_seen + 1,
        "first_seen_at": _earlier_of(new.first_seen_at, seller.first_seen_at),
    }
    for name in [*_COLUMNS[6:], "last_seen_at"]:
        changes[name] = sa.case((latest, new[name]), else_=seller[name])
    return insert.on_conflict_do_update(
        index_elements=["org_id", "scope_id", "username"], set_=changes
    )
