"""Organizations and their members."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.core.pagination import PageParams, paginate
from app.core.tenancy import org_rows
from app.errors import ConflictError, NotFoundError
from app.providers.budget_tables import ProviderCallCap
from app.providers.ebay_parsing import PROVIDER as EBAY
from app.tables import Invitation, Membership, Organization, Role, User


class Keep(enum.Enum):
    """A setting left as it is (where None is a value: no cap)."""

    KEEP = "keep"


KEEP = Keep.KEEP


class AlreadyMemberError(ConflictError):
    """The email already has a membership or a pending invitation in this organization."""


class MemberNotFoundError(NotFoundError):
    """No such member, or no such invitation, in this organization."""


class LastAdminError(ConflictError):
    """The change would leave the organization without an admin."""


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


async def get_org(session: AsyncSession, *, org_id: uuid.UUID) -> Organization:
    """The acting organization's row (its name and settings)."""
    org = await session.get(Organization, org_id)
    if org is None:  # the acting organization was deleted mid-request
        raise NotFoundError(f"organization {org_id} not found")
    return org


@dataclass(frozen=True, slots=True)
class OrgSettings:
    """The organization's settings: the fee % of margins, its own cap on eBay calls."""

    expected_fee_percent: Decimal
    ebay_daily_call_cap: int | None


async def get_settings(session: AsyncSession, *, org_id: uuid.UUID) -> OrgSettings:
    """The acting organization's settings."""
    org = await get_org(session, org_id=org_id)
    cap = await session.scalar(
        org_rows(ProviderCallCap, org_id)
        .with_only_columns(ProviderCallCap.daily_calls)
        .where(ProviderCallCap.provider == EBAY)
    )
    return OrgSettings(org.expected_fee_percent, cap)


async def update_settings(
    session: AsyncSession,
    *,
    org_id: uuid.UUID,
    expected_fee_percent: Decimal | None = None,
    ebay_daily_call_cap: int | Keep | None = KEEP,
) -> OrgSettings:
    """Change the organization's settings given (None, KEEP for the cap: keep; a cap of
    None removes it). A new fee % applies to runs created from now on: each run keeps the
    fee % it was created with. A new cap applies to the next eBay call of its runs."""
    org = await get_org(session, org_id=org_id)
    if expected_fee_percent is not None:
        org.expected_fee_percent = expected_fee_percent
    if not isinstance(ebay_daily_call_cap, Keep):
        caps = ProviderCallCap
        await session.execute(sa.delete(caps).where(caps.org_id == org_id, caps.provider == EBAY))
        if ebay_daily_call_cap is not None:
            session.add(
                caps(
                    org_id=org_id,
                    provider=EBAY,
                    daily_calls=ebay_daily_call_cap,
                    updated_at=utcnow(),
                )
            )
    await session.flush()
    return await get_settings(session, org_id=org_id)


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


async def change_role(
    session: AsyncSession, *, org_id: uuid.UUID, user_id: uuid.UUID, role: Role
) -> Member:
    """Give a member another role; the organization always keeps at least one admin."""
    membership = await _membership_to_change(session, org_id, user_id)
    if membership.role is Role.ADMIN and role is not Role.ADMIN:
        await _keep_an_admin(session, org_id, without=user_id)
    membership.role = role
    await session.flush()
    email = await session.scalar(sa.select(User.email).where(User.id == user_id))
    assert email is not None  # memberships reference users
    return Member(user_id, email, role, "active", membership.created_at)


async def remove_member(session: AsyncSession, *, org_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """Take a user out of the organization (their runs stay); never its last admin."""
    membership = await _membership_to_change(session, org_id, user_id)
    if membership.role is Role.ADMIN:
        await _keep_an_admin(session, org_id, without=user_id)
    await session.delete(membership)
    await session.flush()


async def revoke_invitation(session: AsyncSession, *, org_id: uuid.UUID, email: str) -> None:
    """Withdraw a pending invitation."""
    deleted = await session.execute(
        sa.delete(Invitation)
        .where(Invitation.org_id == org_id, Invitation.email == email)
        .returning(Invitation.id)
    )
    if deleted.first() is None:
        raise MemberNotFoundError(f"invitation {email} not found")


async def _membership_to_change(
    session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID
) -> Membership:
    """The membership, with the organization's membership changes serialized.

    Locking the organization row first (PostgreSQL; SQLite's write transactions are
    serialized anyway) makes "is someone else still admin?" and the change one step: two
    admins demoting each other at once cannot both succeed, and cannot deadlock.
    """
    await session.execute(
        sa.select(Organization.id).where(Organization.id == org_id).with_for_update()
    )
    membership = await session.get(Membership, (org_id, user_id), populate_existing=True)
    if membership is None:
        raise MemberNotFoundError(f"member {user_id} not found")
    return membership


async def _keep_an_admin(session: AsyncSession, org_id: uuid.UUID, *, without: uuid.UUID) -> None:
    other_admin = await session.scalar(
        sa.select(Membership.user_id)
        .where(
            Membership.org_id == org_id,
            Membership.role == Role.ADMIN,
            Membership.user_id != without,
        )
        .limit(1)
    )
    if other_admin is None:
        raise LastAdminError(
            "this is the organization's only admin; make another member admin first"
        )
