"""The signed-in user, organizations and their members."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, status

from app.auth import (
    ROLE_PERMISSIONS,
    CurrentOrg,
    CurrentPrincipal,
    OrgContext,
    require_permission_key,
)
from app.dependencies import SessionDep
from app.models import (
    MemberCreate,
    MemberResponse,
    MembershipInfo,
    MeResponse,
    OrgCreate,
    OrgResponse,
)
from app.pagination import Page, PageParams, page_params
from app.services import orgs as org_service

router = APIRouter(tags=["organizations"])

AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing, invalid or expired bearer token."},
    403: {"description": "Not a member of the organization, or the role lacks the permission."},
}


@router.get("/me", response_model=MeResponse, responses=AUTH_ERRORS)
async def me(principal: CurrentPrincipal, session: SessionDep) -> MeResponse:
    """The signed-in user, their memberships and the permission keys each grants."""
    names = await org_service.org_names(session, list(principal.memberships))
    memberships = [
        MembershipInfo(
            org_id=org_id,
            org_name=names[org_id],
            role=role,
            permissions=sorted(ROLE_PERMISSIONS[role]),
        )
        for org_id, role in sorted(principal.memberships.items(), key=lambda m: names[m[0]])
    ]
    return MeResponse(user_id=principal.user_id, email=principal.email, memberships=memberships)


@router.post(
    "/orgs", response_model=OrgResponse, status_code=status.HTTP_201_CREATED, responses=AUTH_ERRORS
)
async def create_org(
    body: OrgCreate, principal: CurrentPrincipal, session: SessionDep
) -> OrgResponse:
    """Create an organization; the caller becomes its admin."""
    org = await org_service.create_org(session, name=body.name, admin_id=principal.user_id)
    await session.commit()
    return OrgResponse.model_validate(org)


@router.get("/orgs/current/members", response_model=Page[MemberResponse], responses=AUTH_ERRORS)
async def list_members(
    ctx: CurrentOrg, session: SessionDep, page: Annotated[PageParams, Depends(page_params)]
) -> Page[MemberResponse]:
    """Members of the acting organization, newest first (any member may look)."""
    members, next_cursor = await org_service.list_members(session, org_id=ctx.org_id, page=page)
    return Page(items=[MemberResponse.model_validate(m) for m in members], next_cursor=next_cursor)


@router.get("/orgs/current/invitations", response_model=Page[MemberResponse], responses=AUTH_ERRORS)
async def list_invitations(
    ctx: Annotated[OrgContext, Depends(require_permission_key("members.manage"))],
    session: SessionDep,
    page: Annotated[PageParams, Depends(page_params)],
) -> Page[MemberResponse]:
    """Invitations waiting for their user's first sign-in (admins)."""
    invites, next_cursor = await org_service.list_invitations(session, org_id=ctx.org_id, page=page)
    return Page(items=[MemberResponse.model_validate(m) for m in invites], next_cursor=next_cursor)


@router.post(
    "/orgs/current/members",
    response_model=MemberResponse,
    status_code=status.HTTP_201_CREATED,
    responses={
        **AUTH_ERRORS,
        409: {"description": "Already a member or already invited."},
    },
)
async def add_member(
    body: MemberCreate,
    ctx: Annotated[OrgContext, Depends(require_permission_key("members.manage"))],
    session: SessionDep,
) -> MemberResponse:
    """Add a member by email (admins). Someone who never signed in is invited instead
    (`status: "invited"`) and becomes a member at their first sign-in with that email."""
    try:
        member = await org_service.add_member(
            session, org_id=ctx.org_id, email=body.email, role=body.role, invited_by=ctx.user_id
        )
    except org_service.AlreadyMemberError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    await session.commit()
    return MemberResponse.model_validate(member)
