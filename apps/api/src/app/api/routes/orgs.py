"""The signed-in user, organizations and their members."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from app import orgs as org_service
from app.api.deps import (
    CanChangeSettings,
    CanManageMembers,
    CurrentOrg,
    CurrentPrincipal,
    SessionDep,
)
from app.api.errors import AUTH_ERRORS, Responses
from app.auth import ROLE_PERMISSIONS
from app.core.pagination import Page, PageParams, page_params
from app.models import (
    Email,
    MemberCreate,
    MemberResponse,
    MembershipInfo,
    MemberUpdate,
    MeResponse,
    OrgCreate,
    OrgResponse,
    OrgSettingsResponse,
    OrgSettingsUpdate,
)

router = APIRouter(tags=["organizations"])


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


@router.get("/orgs/current/settings", response_model=OrgSettingsResponse, responses=AUTH_ERRORS)
async def get_settings(ctx: CurrentOrg, session: SessionDep) -> OrgSettingsResponse:
    """The acting organization's settings (any member may look): the expected eBay fee
    percentage that estimated margins take off, and its own daily cap of eBay calls."""
    settings = await org_service.get_settings(session, org_id=ctx.org_id)
    return OrgSettingsResponse.model_validate(settings)


@router.patch(
    "/orgs/current/settings",
    response_model=OrgSettingsResponse,
    responses={
        **AUTH_ERRORS,
        422: {"description": "A value out of range (the message names the field and range)."},
    },
)
async def update_settings(
    body: OrgSettingsUpdate, ctx: CanChangeSettings, session: SessionDep
) -> OrgSettingsResponse:
    """Change the organization's settings (admins). A new `expected_fee_percent` applies to
    runs created from now on: each run keeps the fee % it was created with, so the
    margins of earlier runs do not change. `ebay_daily_call_cap` (null removes it) applies
    to the next eBay call of its runs."""
    settings = await org_service.update_settings(
        session,
        org_id=ctx.org_id,
        expected_fee_percent=body.expected_fee_percent,
        ebay_daily_call_cap=body.ebay_daily_call_cap
        if "ebay_daily_call_cap" in body.model_fields_set
        else org_service.KEEP,
    )
    await session.commit()
    return OrgSettingsResponse.model_validate(settings)


@router.get("/orgs/current/members", response_model=Page[MemberResponse], responses=AUTH_ERRORS)
async def list_members(
    ctx: CurrentOrg, session: SessionDep, page: Annotated[PageParams, Depends(page_params)]
) -> Page[MemberResponse]:
    """Members of the acting organization, newest first (any member may look)."""
    members, next_cursor = await org_service.list_members(session, org_id=ctx.org_id, page=page)
    return Page(items=[MemberResponse.model_validate(m) for m in members], next_cursor=next_cursor)


@router.get("/orgs/current/invitations", response_model=Page[MemberResponse], responses=AUTH_ERRORS)
async def list_invitations(
    ctx: CanManageMembers,
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
    body: MemberCreate, ctx: CanManageMembers, session: SessionDep
) -> MemberResponse:
    """Add a member by email (admins). Someone who never signed in is invited instead
    (`status: "invited"`) and becomes a member at their first sign-in with that email."""
    member = await org_service.add_member(
        session, org_id=ctx.org_id, email=body.email, role=body.role, invited_by=ctx.user_id
    )
    await session.commit()
    return MemberResponse.model_validate(member)


MEMBER_NOT_FOUND: Responses = {
    404: {"description": "No such member (or invitation) in the acting organization."}
}
LAST_ADMIN: Responses = {
    409: {"description": "The change would leave the organization without an admin."}
}


@router.patch(
    "/orgs/current/members/{user_id}",
    response_model=MemberResponse,
    responses={**AUTH_ERRORS, **MEMBER_NOT_FOUND, **LAST_ADMIN},
)
async def change_member_role(
    user_id: uuid.UUID, body: MemberUpdate, ctx: CanManageMembers, session: SessionDep
) -> MemberResponse:
    """Change a member's role (admins). The organization always keeps an admin."""
    member = await org_service.change_role(
        session, org_id=ctx.org_id, user_id=user_id, role=body.role
    )
    await session.commit()
    return MemberResponse.model_validate(member)


@router.delete(
    "/orgs/current/members/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**AUTH_ERRORS, **MEMBER_NOT_FOUND, **LAST_ADMIN},
)
async def remove_member(user_id: uuid.UUID, ctx: CanManageMembers, session: SessionDep) -> Response:
    """Remove a member (admins): their access ends with their next request; the runs they
    started stay. The organization's last admin cannot be removed."""
    await org_service.remove_member(session, org_id=ctx.org_id, user_id=user_id)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete(
    "/orgs/current/invitations/{email}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**AUTH_ERRORS, **MEMBER_NOT_FOUND},
)
async def revoke_invitation(
    email: Annotated[Email, Path(examples=["ana@example.com"])],
    ctx: CanManageMembers,
    session: SessionDep,
) -> Response:
    """Withdraw an invitation that is still pending (admins)."""
    await org_service.revoke_invitation(session, org_id=ctx.org_id, email=email)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
