"""The members page: who belongs to the organization; admins add, re-role and remove
members and withdraw invitations."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from app import orgs as org_service
from app.api.deps import SessionDep
from app.core.pagination import PageParams
from app.errors import AppError, ConflictError
from app.models import MemberCreate, MemberResponse, MemberUpdate, email_address
from app.tables import Role
from app.web.errors import WebError, field_errors, web_error
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
    org_id = context.org.org_id
    members, next_cursor = await org_service.list_members(
        session, org_id=org_id, page=PageParams(cursor=cursor, limit=MEMBERS_PER_PAGE)
    )
    invitations: list[org_service.Member] = []
    more_invitations: str | None = None
    if context.can("members.manage"):
        invitations, more_invitations = await org_service.list_invitations(
            session, org_id=org_id, page=PageParams(cursor=None, limit=INVITATIONS_SHOWN)
        )
    return render(
        request,
        "members.html",
        status_code=status_code,
        nav="members",
        members=[MemberResponse.model_validate(m) for m in members],
        next_cursor=next_cursor,
        cursor=cursor,
        invitations=[MemberResponse.model_validate(m) for m in invitations],
        more_invitations=bool(more_invitations),
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
        row = await org_service.add_member(
            session,
            org_id=context.org.org_id,
            email=body.email,
            role=body.role,
            invited_by=context.org.user_id,
        )
        await session.commit()
    except (ValidationError, ConflictError) as exc:
        if isinstance(exc, ValidationError):
            errors, code = field_errors(exc), status.HTTP_400_BAD_REQUEST
        else:
            errors, code = {"email": exc.message}, status.HTTP_409_CONFLICT
        return await _page(
            request, context, session, email=email, role=role, errors=errors, status_code=code
        )
    member = MemberResponse.model_validate(row)
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
        member = await org_service.change_role(
            session, org_id=context.org.org_id, user_id=member_id, role=body.role
        )
        await session.commit()
    except ValidationError as exc:
        return _back(request, f"Role not changed: {field_errors(exc).get('role')}.", error=True)
    except ConflictError as exc:
        return _back(request, f"Role not changed: {exc.message}.", error=True)
    except AppError as exc:
        raise web_error(exc, missing=_missing_member(context)) from None
    return _back(request, f"{member.email} is now {member.role.value}.")


@router.post("/members/{user_id}/remove")
async def remove_member(
    request: Request, context: CanManageMembers, session: SessionDep, user_id: str
) -> Response:
    """Take someone out of the organization (DELETE /orgs/current/members/{user_id})."""
    member_id = _user_id(user_id)
    try:
        await org_service.remove_member(session, org_id=context.org.org_id, user_id=member_id)
        await session.commit()
    except ConflictError as exc:
        return _back(request, f"Not removed: {exc.message}.", error=True)
    except AppError as exc:
        raise web_error(exc, missing=_missing_member(context)) from None
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
        await org_service.revoke_invitation(session, org_id=context.org.org_id, email=address)
        await session.commit()
    except AppError as exc:
        raise web_error(
            exc,
            missing=f"No invitation of {address} is waiting in "
            f"{context.org_name}: it was withdrawn, or they signed in and joined.",
        ) from None
    return _back(request, f"The invitation of {address} is withdrawn.")
