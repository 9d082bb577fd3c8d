"""Signing in and out (here or everywhere), one-time sign-in links, the account page (with
the digest preferences), and choosing or creating an organization."""

from __future__ import annotations

import hmac
import secrets
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request, status
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app import orgs as org_service, users as user_service, web_sessions
from app.api.deps import SessionDep
from app.api.errors import status_of
from app.auth import Principal, authenticate
from app.errors import AppError
from app.instance import instance_of
from app.models import OrgCreate
from app.web import watchlist as watchlist_pages
from app.web.errors import WebError
from app.web.rendering import display_email, flash, render
from app.web.session import (
    SIGN_IN_COOKIE,
    CanView,
    CurrentSession,
    WebContext,
    WebPrincipal,
    acting_context,
    check_origin,
    choose_org,
    end_session,
    is_https,
    safe_next,
    session_policy,
    start_session,
    web_clock,
    web_context,
)

router = APIRouter(include_in_schema=False)


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
    if signed_out == "everywhere":
        notice = "You are signed out in every browser."
    elif signed_out:
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
    """Check a pasted token exactly as the API does; open a session for its user."""
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
    except AppError as exc:
        return _sign_in_page(
            request,
            next_path=next_path,
            error=f"This token was not accepted: {exc.message}.",
            status_code=status_of(exc),
        )
    response = RedirectResponse(next_path, status_code=status.HTTP_303_SEE_OTHER)
    response.delete_cookie(SIGN_IN_COOKIE, path="/sign-in")
    database = instance_of(request).database
    async with database.transaction() as session:
        await start_session(response, request, session=session, user_id=principal.user_id)
    return flash(response, request, f"Signed in as {display_email(principal.email)}.")


@router.get("/sign-in/link")
async def sign_in_with_link(request: Request, code: str = "") -> Response:
    """Redeem a one-time link (`collection-api sign-in-link`, or printed by `serve`)."""
    database = instance_of(request).database
    response = RedirectResponse("/", status_code=status.HTTP_303_SEE_OTHER)
    try:
        async with database.transaction() as session:
            email = await web_sessions.redeem_sign_in_link(
                session, code=code, now=web_clock(request)
            )
            user_id = await web_sessions.user_for_email(session, email)
            await start_session(response, request, session=session, user_id=user_id)
    except web_sessions.SignInLinkRefusedError as exc:
        return _sign_in_page(
            request,
            error=f"{exc} Print a new one with `collection-api sign-in-link` on the "
            "server's machine, or paste a token below.",
            status_code=status.HTTP_400_BAD_REQUEST,
        )
    except user_service.EmailTakenError as exc:
        return _sign_in_page(request, error=f"{exc}.", status_code=status.HTTP_409_CONFLICT)
    return flash(response, request, f"Signed in as {email} with a one-time link.")


@router.post("/sign-out")
async def sign_out(request: Request, _principal: WebPrincipal, session: SessionDep) -> Response:
    """End this browser's session on the server (CSRF-checked, like every form)."""
    current: CurrentSession = request.state.web_session
    await web_sessions.revoke_session(
        session, session_id=current.session_id, now=web_clock(request)
    )
    await session.commit()
    response = RedirectResponse("/sign-in?signed_out=1", status_code=status.HTTP_303_SEE_OTHER)
    return end_session(response, request)


@router.post("/sign-out/everywhere")
async def sign_out_everywhere(
    request: Request, principal: WebPrincipal, session: SessionDep
) -> Response:
    """End every web session of this user, in every browser (API tokens are not sessions:
    they work until they expire)."""
    await web_sessions.revoke_user_sessions(
        session, user_id=principal.user_id, now=web_clock(request)
    )
    await session.commit()
    response = RedirectResponse(
        "/sign-in?signed_out=everywhere", status_code=status.HTTP_303_SEE_OTHER
    )
    return end_session(response, request)


@router.get("/account")
async def account_page(request: Request, principal: WebPrincipal, session: SessionDep) -> Response:
    """Who is signed in, their sessions, "sign out everywhere", and their digest
    preferences in the organization they act in."""
    context = await acting_context(request, principal)  # the header's organization, if any
    return await _account_page(request, principal, session, context)


async def _account_page(
    request: Request,
    principal: Principal,
    session: AsyncSession,
    context: WebContext | None,
    *,
    digest_values: dict[str, str] | None = None,
    digest_errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    settings = instance_of(request).settings
    policy = session_policy(settings)
    current: CurrentSession = request.state.web_session
    digest = await watchlist_pages.account_preferences(request, context)
    if digest_errors:
        digest.update(digest_values=digest_values, digest_errors=digest_errors)
    return render(
        request,
        "account.html",
        status_code=status_code,
        nav="account",
        email=principal.email,
        csrf_token=current.csrf_token,
        sessions=await web_sessions.live_sessions(
            session, user_id=principal.user_id, now=web_clock(request), policy=policy
        ),
        current_id=current.session_id,
        idle_hours=policy.idle_timeout.total_seconds() / 3600,
        max_days=policy.max_age.total_seconds() / 86_400,
        **digest,
    )


@router.post("/account/digest")
async def save_digest_preferences(
    request: Request,
    context: CanView,
    session: SessionDep,
    subscribed: Annotated[str, Form()] = "",
    top_n: Annotated[str, Form()] = "",
    rank_threshold: Annotated[str, Form()] = "",
) -> Response:
    """Save the digest preferences in the form's organization (PATCH /me/digest)."""
    parsed = watchlist_pages.parse_preferences(subscribed, top_n, rank_threshold)
    if isinstance(parsed, dict):
        values = {"subscribed": subscribed, "top_n": top_n, "rank_threshold": rank_threshold}
        return await _account_page(
            request,
            request.state.principal,
            session,
            context,
            digest_values=values,
            digest_errors=parsed,
            status_code=status.HTTP_400_BAD_REQUEST,
        )
    wanted = await watchlist_pages.save_preferences(session, context, parsed)
    if wanted.subscribed:
        message = (
            f"Digest saved: after each scheduled run of {context.org_name} that has news for "
            f"you (new sellers in the top {wanted.top_n}, watched sellers appearing, going or "
            f"moving {wanted.rank_threshold} places or more), you get an email."
        )
    else:
        message = f"Digest saved: you get no digest emails from {context.org_name}."
    response = RedirectResponse("/account", status_code=status.HTTP_303_SEE_OTHER)
    return flash(response, request, message)


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
        operator=principal.email == web_sessions.LOCAL_OPERATOR_EMAIL,
        error=error,
        name=name,
    )
