"""The members page: who belongs to the organization; admins add, re-role and remove
members and withdraw invitations."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from app.dependencies import SessionDep
from app.models import MemberCreate, MemberUpdate, email_address
from app.pagination import PageParams
from app.routers import orgs as api
from app.tables import Role
from app.web.errors import WebError, detail_text, field_errors, web_error
from app.web.rendering import display_email, flash, render
from app.web.session import CanManageMembers, CanView, WebContext

router = APIRouter(include_in_schema=False)

MEMBERS_PER_PAGE = 50
INVITATIONS_SHOWN = 100

ROLE_HINTS = {
    Role.ADMIN: "everything, including members and the schedule",
    Role.MEMBER: "runs and presets",
    Role.VIEWER: "sees runs, results and presets",
}


async def _page(
    request: Request,
    context: WebContext,
    session: SessionDep,
    *,
    cursor: str | None = None,
    email: str = "",
    role: str = Role.MEMBER.value,
    errors: dict[str, str] | None = None,
    status_code: int = status.HTTP_200_OK,
) -> Response:
    try:
        members = await api.list_members(
            context.org, session, PageParams(cursor=cursor, limit=MEMBERS_PER_PAGE)
        )
        invitations = (
            await api.list_invitations(
                context.org, session, PageParams(cursor=None, limit=INVITATIONS_SHOWN)
            )
            if context.can("members.manage")
            else None
        )
    except HTTPException as exc:
        raise web_error(exc) from None
    return render(
        request,
        "members.html",
        status_code=status_code,
        nav="members",
        members=members.items,
        next_cursor=members.next_cursor,
        cursor=cursor,
        invitations=invitations.items if invitations else [],
        more_invitations=bool(invitations and invitations.next_cursor),
        roles=ROLE_HINTS,
        email=email,
        role=role,
        errors=errors or {},
    )


@router.get("/members")
async def members_page(
    request: Request, context: CanView, session: SessionDep, cursor: str | None = None
) -> Response:
    """The organization's members, newest first; admins also see invitations and a form."""
    return await _page(request, context, session, cursor=cursor)


@router.post("/members")
async def add_member(
    request: Request,
    context: CanManageMembers,
    session: SessionDep,
    email: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = Role.MEMBER.value,
) -> Response:
    """Add a member, or invite someone who never signed in (POST /orgs/current/members)."""
    try:
        body = MemberCreate.model_validate({"email": email.strip(), "role": role})
        member = await api.add_member(body, context.org, session)
    except (ValidationError, HTTPException) as exc:
        if isinstance(exc, ValidationError):
            errors, code = field_errors(exc), status.HTTP_400_BAD_REQUEST
        elif exc.status_code == status.HTTP_409_CONFLICT:
            errors, code = {"email": detail_text(exc)}, exc.status_code
        else:
            raise web_error(exc) from None
        return await _page(
            request, context, session, email=email, role=role, errors=errors, status_code=code
        )
    shown = display_email(member.email)
    if member.status == "invited":
        message = (
            f"{shown} is invited as {member.role.value}: they join {context.org_name} "
            "when they first sign in with that address."
        )
    else:
        message = f"{shown} added to {context.org_name} as {member.role.value}."
    response = RedirectResponse("/members", status_code=status.HTTP_303_SEE_OTHER)
    return flash(response, request, message)


def _user_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise WebError(
            status.HTTP_404_NOT_FOUND, "There is no such member in this organization."
        ) from None


def _missing_member(context: WebContext) -> str:
    return (
        f"This person is not a member of {context.org_name} (any more): reload the members "
        "page to see who is."
    )


def _back(request: Request, message: str, *, error: bool = False) -> Response:
    response = RedirectResponse("/members", status_code=status.HTTP_303_SEE_OTHER)
    return flash(response, request, message, error=error)


@router.post("/members/{user_id}/role")
async def change_role(
    request: Request,
    context: CanManageMembers,
    session: SessionDep,
    user_id: str,
    role: Annotated[str, Form()] = "",
) -> Response:
    """Give a member another role (PATCH /orgs/current/members/{user_id})."""
    member_id = _user_id(user_id)
    try:
        body = MemberUpdate.model_validate({"role": role})
        member = await api.change_member_role(member_id, body, context.org, session)
    except ValidationError as exc:
        return _back(request, f"Role not changed: {field_errors(exc).get('role')}.", error=True)
    except HTTPException as exc:
        if exc.status_code != status.HTTP_409_CONFLICT:
            raise web_error(exc, missing=_missing_member(context)) from None
        return _back(request, f"Role not changed: {detail_text(exc)}.", error=True)
    return _back(request, f"{member.email} is now {member.role.value}.")


@router.post("/members/{user_id}/remove")
async def remove_member(
    request: Request, context: CanManageMembers, session: SessionDep, user_id: str
) -> Response:
    """Take someone out of the organization (DELETE /orgs/current/members/{user_id})."""
    member_id = _user_id(user_id)
    try:
        await api.remove_member(member_id, context.org, session)
    except HTTPException as exc:
        if exc.status_code != status.HTTP_409_CONFLICT:
            raise web_error(exc, missing=_missing_member(context)) from None
        return _back(request, f"Not removed: {detail_text(exc)}.", error=True)
    if member_id == context.org.user_id:
        response = RedirectResponse("/", status_code=status.HTTP_303_SEE_OTHER)
        return flash(response, request, f"You left {context.org_name}.")
    return _back(request, f"Removed from {context.org_name}; their runs and presets stay.")


@router.post("/members/invitations/revoke")
async def revoke_invitation(
    request: Request,
    context: CanManageMembers,
    session: SessionDep,
    email: Annotated[str, Form()] = "",
) -> Response:
    """Withdraw a pending invitation (DELETE /orgs/current/invitations/{email})."""
    try:
        address = email_address(email)
    except ValueError as exc:
        return _back(request, f"Not withdrawn: the email {exc}.", error=True)
    try:
        await api.revoke_invitation(address, context.org, session)
    except HTTPException as exc:
        raise web_error(
            exc,
            missing=f"No invitation of {address} is waiting in "
            f"{context.org_name}: it was withdrawn, or they signed in and joined.",
        ) from None
    return _back(request, f"The invitation of {address} is withdrawn.")
