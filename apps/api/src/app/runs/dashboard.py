"""What changed since the last run, per preset: the home page's cards.

Read from the seller directory (app.runs.directory) rather than by comparing the runs'
results, so the counts agree with the directory's trends by construction: a seller
**gained** by a preset's latest completed run is one whose trend there is `new` (in the
latest run, not in the one before), a seller **lost** is one whose trend is `gone` (in the
run before, not in the latest). Each count reads one range of the directory's
`last_seen` index: the rows whose latest sighting in the scope is that run.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.directory_tables import DirectoryScope, DirectorySeller
from app.tables import CategoryPreset, CollectionRun

_D = DirectorySeller

PRESETS_SHOWN = 6
"""Cards on the home page: the presets whose runs completed most recently."""


@dataclass(frozen=True, slots=True)
class SinceLastRun:
    """A preset's latest completed run against the one before it."""

    preset_id: uuid.UUID
    preset_name: str
    latest_run_id: uuid.UUID
    latest_run_name: str
    latest_run_at: datetime
    sellers: int
    previous_run_id: uuid.UUID | None
    previous_run_at: datetime | None
    gained: int
    lost: int


async def since_last_run(
    session: AsyncSession, *, org_id: uuid.UUID, limit: int = PRESETS_SHOWN
) -> list[SinceLastRun]:
    """The sellers each of the organization's presets gained and lost with its latest
    completed run, for the `limit` presets whose latest run is newest. Deleted presets
    and category lists without a preset are left out."""
    scopes = (
        await session.execute(
            sa.select(
                DirectoryScope.scope_id,
                CategoryPreset.name,
                DirectoryScope.latest_run_id,
                DirectoryScope.latest_run_at,
                DirectoryScope.previous_run_id,
                DirectoryScope.previous_run_at,
                CollectionRun.name,
            )
            .join(
                CategoryPreset,
                sa.and_(
                    CategoryPreset.org_id == DirectoryScope.org_id,
                    CategoryPreset.id == DirectoryScope.preset_id,
                ),
            )
            .join(
                CollectionRun,
                sa.and_(
                    CollectionRun.org_id == DirectoryScope.org_id,
                    CollectionRun.id == DirectoryScope.latest_run_id,
                ),
            )
            .where(DirectoryScope.org_id == org_id)
            .order_by(DirectoryScope.latest_run_at.desc(), DirectoryScope.scope_id)
            .limit(limit)
        )
    ).all()
    cards = []
    for scope_id, preset, latest_id, latest_at, previous_id, previous_at, name in scopes:
        # in the latest run: all its sellers, and those not seen in the run before it
        not_seen_before = sa.or_(_D.prev_run_id.is_(None), _D.prev_run_id != previous_id)
        sellers, gained = await _counts(
            session, org_id, scope_id, latest_id, latest_at, not_seen_before
        )
        lost = 0
        if previous_id is not None and previous_at is not None:
            lost, _ = await _counts(session, org_id, scope_id, previous_id, previous_at)
        cards.append(
            SinceLastRun(
                preset_id=scope_id,
                preset_name=preset,
                latest_run_id=latest_id,
                latest_run_name=name,
                latest_run_at=latest_at,
                sellers=sellers,
                previous_run_id=previous_id,
                previous_run_at=previous_at,
                gained=gained if previous_id else 0,
                lost=lost,
            )
        )
    return cards


async def _counts(
    session: AsyncSession,
    org_id: uuid.UUID,
    scope_id: uuid.UUID,
    run_id: uuid.UUID,
    run_at: datetime,
    among: sa.ColumnElement[bool] | None = None,
) -> tuple[int, int]:
    """How many sellers of the scope were last seen in `run_id` (created at `run_at`,
    which bounds the range of the index), and how many of them match `among`."""
    row = (
        await session.execute(
            sa.select(
                sa.func.count(), sa.func.count().filter(among if among is not None else sa.true())
            )
            .select_from(_D)
            .where(
                _D.org_id == org_id,
                _D.scope_id == scope_id,
                _D.last_seen_at == run_at,
                _D.last_run_id == run_id,
            )
        )
    ).one()
    return row[0], row[1]
