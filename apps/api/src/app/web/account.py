"""Signing in and out, the one-time sign-in link, and choosing or creating an organization."""

from __future__ import annotations

import hmac
import secrets
import uuid
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, status
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from app.auth import Principal, authenticate, issue_token
from app.cli import local_user_id  # the user id `collection-api token` gives an email
from app.config import Settings
from app.database import Database
from app.dependencies import SessionDep
from app.models import OrgCreate
from app.services import orgs as org_service
from app.tables import Membership, Role, User
from app.web.errors import WebError, detail_text
from app.web.rendering import display_email, flash, render
from app.web.session import (
    SIGN_IN_COOKIE,
    SIGN_IN_LINK_TTL_SECONDS,
    SignInLinks,
    WebContext,
    WebPrincipal,
    check_origin,
    choose_org,
    end_session,
    is_https,
    safe_next,
    start_session,
    web_context,
)

router = APIRouter(include_in_schema=False)

# Who the one-time link signs in when no organization has an admin yet.
LOCAL_OPERATOR_EMAIL = "admin@localhost"


def _sign_in_page(
    request: Request,
    *,
    next_path: str = "/",
    error: str | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> Response:
    """The sign-in form, with a fresh double-submit token for the form itself."""
    nonce = secrets.token_urlsafe(32)
    response = render(
        request,
        "sign_in.html",
        status_code=status_code,
        nonce=nonce,
        next_path=next_path,
        error=error,
        notice=notice,
        embedded=not request.app.state.settings.jwt_secret,
    )
    response.set_cookie(
        SIGN_IN_COOKIE,
        nonce,
        max_age=3600,
        path="/sign-in",
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )
    return response


@router.get("/sign-in")
async def sign_in_form(
    request: Request,
    next_path: Annotated[str | None, Query(alias="next")] = None,
    reason: str | None = None,
    signed_out: str = "",
) -> Response:
    """The sign-in page."""
    notice = None
    if signed_out:
        notice = "You are signed out."
    elif reason == "ended":
        notice = "Your session has ended: sign in again to continue."
    return _sign_in_page(request, next_path=safe_next(next_path), notice=notice)


@router.post("/sign-in")
async def sign_in(
    request: Request,
    token: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next_field: Annotated[str, Form(alias="next")] = "/",
) -> Response:
    """Check a pasted token exactly as the API does; keep it in the session cookie."""
    check_origin(request)  # a sibling site could plant the form cookie, never this header
    next_path = safe_next(next_field)
    expected = request.cookies.get(SIGN_IN_COOKIE, "")
    if not expected or not hmac.compare_digest(csrf_token.encode(), expected.encode()):
        return _sign_in_page(
            request,
            next_path=next_path,
            error="The sign-in form had expired. Paste your token again.",
            status_code=status.HTTP_400_BAD_REQUEST,
        )
    token = token.strip().removeprefix("Bearer ").strip()
    if not token:
        return _sign_in_page(
            request,
            next_path=next_path,
            error="Paste a token: it is the long text that starts with “ey”.",
            status_code=status.HTTP_400_BAD_REQUEST,
        )
    try:
        principal = await authenticate(request, token)
    except HTTPException as exc:
        return _sign_in_page(
            request,
            next_path=next_path,
            error=f"This token was not accepted: {detail_text(exc)}.",
            status_code=exc.status_code,
        )
    response = RedirectResponse(next_path, status_code=status.HTTP_303_SEE_OTHER)
    response.delete_cookie(SIGN_IN_COOKIE, path="/sign-in")
    start_session(response, request, token)
    return flash(response, request, f"Signed in as {display_email(principal.email)}.")


@router.get("/sign-in/link")
async def sign_in_with_link(request: Request, code: str = "") -> Response:
    """Redeem the one-time link printed by `collection-api serve` (embedded default)."""
    links: SignInLinks = request.app.state.web_sign_in_links
    if not code or not links.redeem(code):
        return _sign_in_page(
            request,
            error="This sign-in link was already used, has expired (links work for 15 "
            "minutes), or is from an earlier start of the server. Restart `collection-api "
            "serve` for a new one, or paste a token below.",
            status_code=status.HTTP_400_BAD_REQUEST,
        )
    settings: Settings = request.app.state.settings
    user_id, email = await _operator(request.app.state.database)
    token = issue_token(
        settings, user_id=user_id, email=email, ttl_seconds=SIGN_IN_LINK_TTL_SECONDS
    )
    response = RedirectResponse("/", status_code=status.HTTP_303_SEE_OTHER)
    start_session(response, request, token)
    return flash(response, request, f"Signed in as {email} with the one-time link.")


async def _operator(database: Database) -> tuple[uuid.UUID, str]:
    """Whom the one-time link signs in: the first admin of any organization, or else the
    local operator account (who can then create the first organization)."""
    async with database.read() as session:
        first_admin = (
            await session.execute(
                sa.select(User.id, User.email)
                .join(Membership, Membership.user_id == User.id)
                .where(Membership.role == Role.ADMIN)
                .order_by(Membership.created_at, User.email)
                .limit(1)
            )
        ).first()
        if first_admin is not None:
            return first_admin[0], first_admin[1]
        existing = await session.scalar(
            sa.select(User.id).where(User.email == LOCAL_OPERATOR_EMAIL)
        )
    return existing or local_user_id(LOCAL_OPERATOR_EMAIL), LOCAL_OPERATOR_EMAIL


@router.post("/sign-out")
async def sign_out(request: Request, _principal: WebPrincipal) -> Response:
    """Forget the session (CSRF-checked, like every form)."""
    response = RedirectResponse("/sign-in?signed_out=1", status_code=status.HTTP_303_SEE_OTHER)
    return end_session(response, request)


@router.get("/")
async def home(_context: Annotated[WebContext, Depends(web_context)]) -> Response:
    """The start page is the list of runs."""
    return RedirectResponse("/runs", status_code=status.HTTP_303_SEE_OTHER)


@router.post("/organization")
async def switch_organization(
    request: Request,
    principal: WebPrincipal,
    org_id: Annotated[str, Form()] = "",
    next_field: Annotated[str, Form(alias="next")] = "/runs",
) -> Response:
    """Act in another of the user's organizations from now on."""
    try:
        wanted = uuid.UUID(org_id)
    except ValueError:
        wanted = None
    if wanted is None or wanted not in principal.memberships:
        raise WebError(status.HTTP_403_FORBIDDEN, "You are not a member of that organization.")
    # Pages of one organization (a run, a preset) are not found in another: start over.
    target = safe_next(next_field, "/runs")
    if target.count("/") > 1:
        target = "/" + target.split("/")[1]
    response = RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
    return choose_org(response, request, wanted)


@router.post("/organization/new")
async def create_organization(
    request: Request,
    principal: WebPrincipal,
    session: SessionDep,
    name: Annotated[str, Form()] = "",
) -> Response:
    """Create an organization; the user becomes its admin and acts in it."""
    try:
        body = OrgCreate.model_validate({"name": name})
    except ValidationError as exc:
        return no_organization_page(
            request, principal, error=exc.errors()[0]["msg"], name=name, status_code=400
        )
    org = await org_service.create_org(session, name=body.name, admin_id=principal.user_id)
    await session.commit()
    response = RedirectResponse("/presets", status_code=status.HTTP_303_SEE_OTHER)
    choose_org(response, request, org.id)
    return flash(response, request, f"Organization {org.name} created. Next: create a preset.")


def no_organization_page(
    request: Request,
    principal: Principal,
    *,
    error: str | None = None,
    name: str = "",
    status_code: int = 200,
) -> Response:
    """What a user who belongs to no organization sees: how to get into one."""
    return render(
        request,
        "no_organization.html",
        status_code=status_code,
        email=principal.email,
        csrf_token=request.state.csrf_token,
        error=error,
        name=name,
    )
