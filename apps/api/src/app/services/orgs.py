"""Organizations and their members."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.pagination import PageParams, paginate
from app.tables import Invitation, Membership, Organization, Role, User


class AlreadyMemberError(Exception):
    """The email already has a membership or a pending invitation in this organization."""


@dataclass(frozen=True, slots=True)
class Member:
    """A member of an organization, or an invitation waiting for the person's first sign-in."""

    user_id: uuid.UUID | None
    email: str
    role: Role
    status: str
    created_at: datetime


async def create_org(session: AsyncSession, *, name: str, admin_id: uuid.UUID) -> Organization:
    """Create an organization whose first admin is `admin_id`."""
    org = Organization(name=name)
    session.add(org)
    await session.flush()
    session.add(Membership(org_id=org.id, user_id=admin_id, role=Role.ADMIN))
    await session.flush()
    return org


async def org_names(session: AsyncSession, org_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Names of the given organizations."""
    if not org_ids:
        return {}
    rows = await session.execute(
        sa.select(Organization.id, Organization.name).where(Organization.id.in_(org_ids))
    )
    return dict(rows.all())


async def list_members(
    session: AsyncSession, *, org_id: uuid.UUID, page: PageParams
) -> tuple[list[Member], str | None]:
    """Active members of the organization, newest first."""
    statement = sa.select(Membership).where(Membership.org_id == org_id)
    rows, next_cursor = await paginate(
        session,
        statement,
        created_at=Membership.created_at,
        row_id=Membership.user_id,
        params=page,
    )
    user_emails = await session.execute(
        sa.select(User.id, User.email).where(User.id.in_([m.user_id for m in rows]))
    )
    emails = dict(user_emails.all())
    members = [Member(m.user_id, emails[m.user_id], m.role, "active", m.created_at) for m in rows]
    return members, next_cursor


async def list_invitations(
    session: AsyncSession, *, org_id: uuid.UUID, page: PageParams
) -> tuple[list[Member], str | None]:
    """Pending invitations of the organization, newest first."""
    statement = sa.select(Invitation).where(Invitation.org_id == org_id)
    rows, next_cursor = await paginate(
        session, statement, created_at=Invitation.created_at, row_id=Invitation.id, params=page
    )
    return [Member(None, i.email, i.role, "invited", i.created_at) for i in rows], next_cursor


async def add_member(
    session: AsyncSession,
    *,
    org_id: uuid.UUID,
    email: str,
    role: Role,
    invited_by: uuid.UUID,
) -> Member:
    """Add the user with `email` to the organization, or invite them if they never signed in."""
    user_id = await session.scalar(sa.select(User.id).where(User.email == email))
    if user_id is not None:
        exists = await session.scalar(
            sa.select(Membership.role).where(
                Membership.org_id == org_id, Membership.user_id == user_id
            )
        )
        if exists is not None:
            raise AlreadyMemberError(f"{email} is already a member (role {exists.value!r})")
        membership = Membership(org_id=org_id, user_id=user_id, role=role)
        await _add_once(session, membership, f"{email} is already a member")
        return Member(user_id, email, role, "active", membership.created_at)
    pending = await session.scalar(
        sa.select(Invitation.id).where(Invitation.org_id == org_id, Invitation.email == email)
    )
    if pending is not None:
        raise AlreadyMemberError(f"{email} is already invited")
    invitation = Invitation(org_id=org_id, email=email, role=role, invited_by=invited_by)
    await _add_once(session, invitation, f"{email} is already invited")
    return Member(None, email, role, "invited", invitation.created_at)


async def _add_once(session: AsyncSession, row: Membership | Invitation, conflict: str) -> None:
    """Insert `row`; a concurrent duplicate (unique violation) becomes AlreadyMemberError."""
    try:
        async with session.begin_nested():
            session.add(row)
    except IntegrityError:
        raise AlreadyMemberError(conflict) from None
