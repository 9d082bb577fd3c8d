"""Preset pages: list, create, edit and delete, with the API's messages at the field."""

from __future__ import annotations

import re
import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from app import presets as preset_service
from app.api.deps import SessionDep
from app.core.pagination import PageParams
from app.errors import ConflictError, NotFoundError
from app.instance import instance_of
from app.models import PresetCreate, PresetResponse, PresetUpdate
from app.web.errors import FORM, WebError, field_errors, web_error
from app.web.rendering import flash, render
from app.web.session import CanManagePresets, CanView, WebContext

router = APIRouter(include_in_schema=False)

PRESETS_PER_PAGE = 50


def category_ids_of(text: str) -> list[str]:
    """The IDs typed into the form: separated by commas, spaces or new lines."""
    return [part for part in re.split(r"[\s,;]+", text.strip()) if part]


def _preset_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise WebError(
            status.HTTP_404_NOT_FOUND, "There is no such preset in this organization."
        ) from None


@router.get("/presets")
async def presets_page(
    request: Request, context: CanView, session: SessionDep, cursor: str | None = None
) -> Response:
    """The organization's presets, newest first."""
    rows, next_cursor = await preset_service.list_presets(
        session, org_id=context.org.org_id, page=PageParams(cursor=cursor, limit=PRESETS_PER_PAGE)
    )
    database = instance_of(request).database
    return render(
        request,
        "presets/list.html",
        nav="presets",
        presets=[PresetResponse.model_validate(row) for row in rows],
        scheduled=await preset_service.scheduled_preset_ids(database, org_id=context.org.org_id),
        next_cursor=next_cursor,
        cursor=cursor,
    )


async def _form(
    request: Request,
    context: WebContext,
    *,
    preset: PresetResponse | None,
    name: str,
    category_ids: str,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    scheduled = preset is not None and preset.id in await preset_service.scheduled_preset_ids(
        instance_of(request).database, org_id=context.org.org_id
    )
    return render(
        request,
        "presets/form.html",
        status_code=status_code,
        nav="presets",
        preset=preset,
        scheduled=scheduled,
        name=name,
        category_ids=category_ids,
        errors=errors or {},
    )


@router.get("/presets/new")
async def new_preset_page(request: Request, context: CanManagePresets) -> Response:
    """The form for a new preset."""
    return await _form(request, context, preset=None, name="", category_ids="")


@router.post("/presets")
async def create_preset(
    request: Request,
    context: CanManagePresets,
    session: SessionDep,
    name: Annotated[str, Form()] = "",
    category_ids: Annotated[str, Form()] = "",
) -> Response:
    """Create a preset (POST /collection/presets)."""
    try:
        body = PresetCreate.model_validate(
            {"name": name, "category_ids": category_ids_of(category_ids)}
        )
        preset = await preset_service.create_preset(
            session,
            org_id=context.org.org_id,
            name=body.name,
            category_ids=body.category_ids,
            created_by=context.org.user_id,
        )
        await session.commit()
    except ValidationError as exc:
        return await _form(
            request,
            context,
            preset=None,
            name=name,
            category_ids=category_ids,
            errors=field_errors(exc),
            status_code=status.HTTP_400_BAD_REQUEST,
        )
    except ConflictError as exc:
        return await _form(
            request,
            context,
            preset=None,
            name=name,
            category_ids=category_ids,
            errors={"name": exc.message},
            status_code=status.HTTP_409_CONFLICT,
        )
    response = RedirectResponse("/presets", status_code=status.HTTP_303_SEE_OTHER)
    count = len(preset.category_ids)
    return flash(
        response,
        request,
        f"Preset {preset.name} created with {count} categor{'y' if count == 1 else 'ies'}.",
    )


async def _get(context: WebContext, session: SessionDep, preset_id: str) -> PresetResponse:
    try:
        row = await preset_service.get_preset(
            session, org_id=context.org.org_id, preset_id=_preset_id(preset_id)
        )
    except NotFoundError as exc:
        raise web_error(
            exc,
            missing=f"This preset is not in {context.org_name}: it was deleted, or it belongs "
            "to another of your organizations (switch organization above).",
        ) from None
    return PresetResponse.model_validate(row)


@router.get("/presets/{preset_id}")
async def edit_preset_page(
    request: Request, preset_id: str, context: CanManagePresets, session: SessionDep
) -> Response:
    """The form that changes a preset."""
    preset = await _get(context, session, preset_id)
    return await _form(
        request,
        context,
        preset=preset,
        name=preset.name,
        category_ids="\n".join(preset.category_ids),
    )


@router.post("/presets/{preset_id}")
async def update_preset(
    request: Request,
    preset_id: str,
    context: CanManagePresets,
    session: SessionDep,
    name: Annotated[str, Form()] = "",
    category_ids: Annotated[str, Form()] = "",
) -> Response:
    """Change a preset's name and categories (PATCH /collection/presets/{id})."""
    preset = await _get(context, session, preset_id)
    try:
        body = PresetUpdate.model_validate(
            {"name": name, "category_ids": category_ids_of(category_ids)}
        )
        row = await preset_service.update_preset(
            session,
            org_id=context.org.org_id,
            preset_id=preset.id,
            name=body.name,
            category_ids=body.category_ids,
        )
        await session.commit()
    except ValidationError as exc:
        errors, status_code = field_errors(exc), status.HTTP_400_BAD_REQUEST
    except ConflictError as exc:
        errors, status_code = {"name": exc.message}, status.HTTP_409_CONFLICT
    except NotFoundError as exc:
        raise web_error(exc) from None
    else:
        preset = PresetResponse.model_validate(row)
        response = RedirectResponse("/presets", status_code=status.HTTP_303_SEE_OTHER)
        return flash(response, request, f"Preset {preset.name} saved.")
    await session.rollback()
    return await _form(
        request,
        context,
        preset=preset,
        name=name,
        category_ids=category_ids,
        errors=errors,
        status_code=status_code,
    )


@router.post("/presets/{preset_id}/delete")
async def delete_preset(
    request: Request,
    preset_id: str,
    context: CanManagePresets,
    session: SessionDep,
    schedule_stops: Annotated[str, Form()] = "",
) -> Response:
    """Delete a preset (DELETE /collection/presets/{id}); runs made from it are kept. A
    preset that a schedule collects is deleted only once the form said the schedule stops."""
    preset = await _get(context, session, preset_id)
    scheduled = await preset_service.scheduled_preset_ids(
        instance_of(request).database, org_id=context.org.org_id
    )
    if preset.id in scheduled and not schedule_stops:
        return await _form(
            request,
            context,
            preset=preset,
            name=preset.name,
            category_ids="\n".join(preset.category_ids),
            errors={
                FORM: f"Not deleted: the schedule collects {preset.name}. Deleting the preset "
                "stops the scheduled runs until an admin chooses another preset on the "
                "schedule page. To delete it anyway, use Delete preset below."
            },
            status_code=status.HTTP_409_CONFLICT,
        )
    try:
        await preset_service.delete_preset(session, org_id=context.org.org_id, preset_id=preset.id)
    except NotFoundError as exc:
        raise web_error(exc) from None
    await session.commit()
    response = RedirectResponse("/presets", status_code=status.HTTP_303_SEE_OTHER)
    message = f"Preset {preset.name} deleted."
    if preset.id in scheduled:
        message += " The schedule has no preset now: nothing runs until an admin chooses one."
    return flash(response, request, message)
