"""Category presets: named lists of Amazon category IDs that runs and schedules collect."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from app import presets as preset_service
from app.api.deps import CanManagePresets, CanView, SessionDep
from app.api.errors import AUTH_ERRORS, Responses
from app.core.pagination import Page, PageParams, page_params
from app.models import PresetCreate, PresetResponse, PresetUpdate

router = APIRouter(prefix="/collection", tags=["collection"])

NOT_FOUND: Responses = {404: {"description": "No such preset in the acting organization."}}
NAME_TAKEN: Responses = {
    409: {"description": "The organization already has a preset with this name."}
}


@router.get("/presets", response_model=Page[PresetResponse], responses=AUTH_ERRORS)
async def list_presets(
    ctx: CanView, session: SessionDep, page: Annotated[PageParams, Depends(page_params)]
) -> Page[PresetResponse]:
    """Category presets of the acting organization, newest first."""
    presets, next_cursor = await preset_service.list_presets(session, org_id=ctx.org_id, page=page)
    return Page(items=[PresetResponse.model_validate(p) for p in presets], next_cursor=next_cursor)


@router.post(
    "/presets",
    response_model=PresetResponse,
    status_code=status.HTTP_201_CREATED,
    responses={**AUTH_ERRORS, **NAME_TAKEN},
)
async def create_preset(
    body: PresetCreate, ctx: CanManagePresets, session: SessionDep
) -> PresetResponse:
    """Create a preset: a name unique in the organization and 1-100 numeric category IDs."""
    preset = await preset_service.create_preset(
        session,
        org_id=ctx.org_id,
        name=body.name,
        category_ids=body.category_ids,
        created_by=ctx.user_id,
    )
    await session.commit()
    return PresetResponse.model_validate(preset)


@router.get(
    "/presets/{preset_id}", response_model=PresetResponse, responses={**AUTH_ERRORS, **NOT_FOUND}
)
async def get_preset(preset_id: uuid.UUID, ctx: CanView, session: SessionDep) -> PresetResponse:
    """One preset of the acting organization."""
    preset = await preset_service.get_preset(session, org_id=ctx.org_id, preset_id=preset_id)
    return PresetResponse.model_validate(preset)


@router.patch(
    "/presets/{preset_id}",
    response_model=PresetResponse,
    responses={**AUTH_ERRORS, **NOT_FOUND, **NAME_TAKEN},
)
async def update_preset(
    preset_id: uuid.UUID, body: PresetUpdate, ctx: CanManagePresets, session: SessionDep
) -> PresetResponse:
    """Rename a preset and/or replace its category IDs; fields left out are kept."""
    preset = await preset_service.update_preset(
        session,
        org_id=ctx.org_id,
        preset_id=preset_id,
        name=body.name,
        category_ids=body.category_ids,
    )
    await session.commit()
    return PresetResponse.model_validate(preset)


@router.delete(
    "/presets/{preset_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={**AUTH_ERRORS, **NOT_FOUND},
)
async def delete_preset(preset_id: uuid.UUID, ctx: CanManagePresets, session: SessionDep) -> None:
    """Delete a preset of the acting organization."""
    await preset_service.delete_preset(session, org_id=ctx.org_id, preset_id=preset_id)
    await session.commit()
