"""Category presets: named lists of Amazon category IDs, per organization."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.database import SYSTEM, Database, acting_as
from app.core.pagination import PageParams, paginate
from app.core.tenancy import org_rows
from app.errors import ConflictError, NotFoundError
from app.tables import CategoryPreset, CollectionSchedule


class PresetNotFoundError(NotFoundError):
    """No preset with this id in the organization."""

    def __init__(self, preset_id: uuid.UUID) -> None:
        super().__init__(f"preset {preset_id} not found")
        self.preset_id = preset_id


class PresetNameTakenError(ConflictError):
    """The organization already has a preset with this name."""


async def list_presets(
    session: AsyncSession, *, org_id: uuid.UUID, page: PageParams
) -> tuple[list[CategoryPreset], str | None]:
    """The organization's presets, newest first."""
    return await paginate(
        session,
        org_rows(CategoryPreset, org_id),
        created_at=CategoryPreset.created_at,
        row_id=CategoryPreset.id,
        params=page,
    )


async def get_preset(
    session: AsyncSession, *, org_id: uuid.UUID, preset_id: uuid.UUID
) -> CategoryPreset:
    """One preset of the organization; another organization's preset is not found."""
    preset = await session.scalar(
        org_rows(CategoryPreset, org_id).where(CategoryPreset.id == preset_id)
    )
    if preset is None:
        raise PresetNotFoundError(preset_id)
    return preset


async def create_preset(
    session: AsyncSession,
    *,
    org_id: uuid.UUID,
    name: str,
    category_ids: list[str],
    created_by: uuid.UUID | None,
) -> CategoryPreset:
    """Create a preset; its name must be new in the organization."""
    preset = CategoryPreset(
        org_id=org_id, name=name, category_ids=category_ids, created_by=created_by
    )
    session.add(preset)
    await _flush_unique_name(session, preset)
    return preset


async def update_preset(
    session: AsyncSession,
    *,
    org_id: uuid.UUID,
    preset_id: uuid.UUID,
    name: str | None = None,
    category_ids: list[str] | None = None,
) -> CategoryPreset:
    """Rename a preset and/or replace its categories."""
    preset = await get_preset(session, org_id=org_id, preset_id=preset_id)
    if name is not None:
        preset.name = name
    if category_ids is not None:
        preset.category_ids = category_ids
    await _flush_unique_name(session, preset)
    return preset


async def delete_preset(session: AsyncSession, *, org_id: uuid.UUID, preset_id: uuid.UUID) -> None:
    """Delete a preset of the organization."""
    result = await session.execute(
        sa.delete(CategoryPreset).where(
            CategoryPreset.org_id == org_id, CategoryPreset.id == preset_id
        )
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]  # CursorResult of a DELETE
        raise PresetNotFoundError(preset_id)


async def scheduled_preset_ids(database: Database, *, org_id: uuid.UUID) -> set[uuid.UUID]:
    """The organization's presets that a schedule collects.

    Read as the system: members may delete presets but not read schedules (row-level
    security on PostgreSQL), and they too must hear that a delete stops a schedule.
    """
    with acting_as(SYSTEM):
        async with database.read() as session:
            return set(
                await session.scalars(
                    sa.select(CollectionSchedule.preset_id).where(
                        CollectionSchedule.org_id == org_id,
                        CollectionSchedule.preset_id.is_not(None),
                    )
                )
            )


async def _flush_unique_name(session: AsyncSession, preset: CategoryPreset) -> None:
    """Write the preset; its name must differ from the organization's other presets' by
    more than case (the unique index on `name_key` settles races)."""
    name = preset.name
    with session.no_autoflush:
        taken = await session.scalar(
            sa.select(CategoryPreset.name).where(
                CategoryPreset.org_id == preset.org_id,
                CategoryPreset.name_key == preset.name_key,
                CategoryPreset.id != preset.id,
            )
        )
    if taken is not None:
        raise PresetNameTakenError(_name_taken(name, taken))
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise PresetNameTakenError(_name_taken(name, name)) from None


def _name_taken(name: str, taken: str) -> str:
    if taken == name:
        return f"a preset named {name!r} already exists; choose another name"
    return (
        f"a preset named {taken!r} already exists, and names that differ only in upper and "
        "lower case count as the same; choose another name"
    )
