"""The organization's settings page: every member reads them (and what an estimated margin
includes, and the organization's daily cap of eBay calls); admins change them through the
same rules as PATCH /orgs/current/settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from app import orgs as org_service
from app.api.deps import SessionDep
from app.instance import instance_of
from app.models import OrgSettingsResponse, OrgSettingsUpdate
from app.providers.ebay import settings_budget_terms
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
    cap: str | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = status.HTTP_200_OK,
) -> Response:
    saved = await org_service.get_settings(session, org_id=context.org.org_id)
    current = OrgSettingsResponse.model_validate(saved)
    own_cap = current.ebay_daily_call_cap
    terms = settings_budget_terms(instance_of(request).settings)
    return render(
        request,
        "settings.html",
        status_code=status_code,
        nav="settings",
        settings=current,
        value=str(current.expected_fee_percent) if value is None else value,
        cap=("" if own_cap is None else str(own_cap)) if cap is None else cap,
        budget=terms,
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


@router.post("/settings/ebay-cap")
async def change_cap(
    request: Request,
    context: CanChangeSettings,
    session: SessionDep,
    ebay_daily_call_cap: Annotated[str, Form()] = "",
) -> Response:
    """Set or remove (empty) the organization's daily cap of eBay calls (PATCH
    /orgs/current/settings): from its runs' next call."""
    value = ebay_daily_call_cap.strip()
    try:
        body = OrgSettingsUpdate.model_validate({"ebay_daily_call_cap": value or None})
    except ValidationError as exc:
        return await _page(
            request,
            context,
            session,
            cap=ebay_daily_call_cap,
            errors=field_errors(exc),
            status_code=status.HTTP_400_BAD_REQUEST,
        )
    saved = await org_service.update_settings(
        session, org_id=context.org.org_id, ebay_daily_call_cap=body.ebay_daily_call_cap
    )
    await session.commit()
    response = RedirectResponse("/settings", status_code=status.HTTP_303_SEE_OTHER)
    cap = saved.ebay_daily_call_cap
    return flash(
        response,
        request,
        "No daily cap of eBay calls: your runs take turns with other organizations' only."
        if cap is None
        else f"Daily cap set to {cap:,} eBay calls: your runs wait for the next day once "
        "they have taken that many.",
    )
