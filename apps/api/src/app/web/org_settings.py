"""The organization's settings page: every member reads them (and what an estimated margin
includes); admins change them through the same rules as PATCH /orgs/current/settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from app import orgs as org_service
from app.api.deps import SessionDep
from app.models import OrgSettingsResponse, OrgSettingsUpdate
from app.tables import DEFAULT_FEE_PERCENT
from app.web.errors import field_errors
from app.web.rendering import flash, render
from app.web.session import CanChangeSettings, CanView, WebContext

router = APIRouter(include_in_schema=False)


async def _page(
    request: Request,
    context: WebContext,
    session: SessionDep,
    *,
    value: str | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = status.HTTP_200_OK,
) -> Response:
    org = await org_service.get_org(session, org_id=context.org.org_id)
    current = OrgSettingsResponse.model_validate(org)
    return render(
        request,
        "settings.html",
        status_code=status_code,
        nav="settings",
        settings=current,
        value=str(current.expected_fee_percent) if value is None else value,
        default_fee=DEFAULT_FEE_PERCENT,
        errors=errors or {},
    )


@router.get("/settings")
async def settings_page(request: Request, context: CanView, session: SessionDep) -> Response:
    """The organization's settings: the expected eBay fee % behind estimated margins."""
    return await _page(request, context, session)


@router.post("/settings")
async def change_settings(
    request: Request,
    context: CanChangeSettings,
    session: SessionDep,
    expected_fee_percent: Annotated[str, Form()] = "",
) -> Response:
    """Change the expected fee % (PATCH /orgs/current/settings): for runs created from now."""
    value = expected_fee_percent.strip()
    try:
        if not value:
            raise ValueError
        body = OrgSettingsUpdate.model_validate({"expected_fee_percent": value})
    except (ValidationError, ValueError) as exc:
        errors = (
            field_errors(exc)
            if isinstance(exc, ValidationError)
            else {"expected_fee_percent": "fill in this field"}
        )
        return await _page(
            request,
            context,
            session,
            value=expected_fee_percent,
            errors=errors,
            status_code=status.HTTP_400_BAD_REQUEST,
        )
    org = await org_service.update_settings(
        session, org_id=context.org.org_id, expected_fee_percent=body.expected_fee_percent
    )
    await session.commit()
    response = RedirectResponse("/settings", status_code=status.HTTP_303_SEE_OTHER)
    return flash(
        response,
        request,
        f"Expected eBay fees set to {org.expected_fee_percent} %. Runs created from now on "
        "use it; earlier runs keep theirs.",
    )
