"""Users: provisioning from verified tokens and the memberships they hold."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.database import Database, insert_ignoring_conflicts
from app.errors import ConflictError
from app.orgs import create_org
from app.tables import Invitation, Membership, Organization, Role, User

# Users who sign in with `collection-api token --email E` (or a sign-in link) and no --sub
# get a stable id derived from the email, so the same email is the same user every time.
LOCAL_USER_NAMESPACE = uuid.UUID("5f0b7c1e-6a38-4d59-9d7e-2b1c0a4e8f11")


def local_user_id(email: str) -> uuid.UUID:
    """The user id the command line gives an email when none is given."""
    return uuid.uuid5(LOCAL_USER_NAMESPACE, email.strip().lower())


class EmailTakenError(ConflictError):
    """The token's email already belongs to a different user id."""


async def resolve_user(
    database: Database, *, user_id: uuid.UUID, email: str
) -> dict[uuid.UUID, Role]:
    """Return the user's memberships, provisioning the user first if this is their first token.

    The common case is one read. A new user, a changed email or a pending invitation
    takes one short write transaction of its own, which turns the invitations for the
    email into memberships.
    """
    async with database.read() as session:
        found = await provisioned_memberships(session, user_id=user_id, email=email)
    if found is not None:
        return found
    return await provision(database, user_id=user_id, email=email)


async def provisioned_memberships(
    session: AsyncSession, *, user_id: uuid.UUID, email: str
) -> dict[uuid.UUID, Role] | None:
    """The memberships of a user known with this email and without pending invitations;
    None when the user must be provisioned first (`provision`).

    One statement, so a request can run it in its own transaction before anything else.
    """
    rows = (await session.execute(_PROVISIONED, {"user_id": user_id, "email": email})).all()
    if not rows or rows[0][0] != email or rows[0][1]:
        return None
    return {row[2]: row[3] for row in rows if row[2] is not None}


# Built once, of the tables' columns rather than the ORM's attributes: every request runs
# it, and building and compiling an ORM statement each time cost more than running it.
_users, _memberships, _invitations = User.__table__, Membership.__table__, Invitation.__table__
_PROVISIONED = (
    sa.select(
        _users.c.email,
        sa.exists().where(_invitations.c.email == sa.bindparam("email")).correlate(None),
        _memberships.c.org_id,
        _memberships.c.role,
    )
    .select_from(_users.outerjoin(_memberships, _memberships.c.user_id == _users.c.id))
    .where(_users.c.id == sa.bindparam("user_id"))
)


async def provision(database: Database, *, user_id: uuid.UUID, email: str) -> dict[uuid.UUID, Role]:
    """Provision the user in a write transaction of its own; return their memberships."""
    async with database.transaction() as session:
        await provision_user(session, user_id=user_id, email=email)
        return await memberships(session, user_id)


async def provision_user(session: AsyncSession, *, user_id: uuid.UUID, email: str) -> None:
    """Create or update the user `user_id` with `email` and claim invitations sent to it."""
    email = email.lower()
    try:
        async with session.begin_nested():
            await session.execute(
                insert_ignoring_conflicts(session, User, index_elements=["id"]),
                {"id": user_id, "email": email},
            )
            await session.execute(sa.update(User).where(User.id == user_id).values(email=email))
    except IntegrityError:
        # PostgreSQL checks the email's unique index too, and a concurrent first request of
        # the same user that inserted the row first makes that check fail, not the
        # `ON CONFLICT (id)` one: the email is taken only if it is not this user's now.
        owner = await session.scalar(sa.select(User.id).where(User.email == email))
        if owner != user_id:
            raise EmailTakenError(
                f"email {email!r} already belongs to another user; sign in with that account"
            ) from None
    invitations = (
        await session.scalars(sa.select(Invitation).where(Invitation.email == email))
    ).all()
    if invitations:
        await session.execute(
            insert_ignoring_conflicts(session, Membership, index_elements=["org_id", "user_id"]),
            [{"org_id": i.org_id, "user_id": user_id, "role": i.role} for i in invitations],
        )
        await session.execute(sa.delete(Invitation).where(Invitation.email == email))


async def memberships(session: AsyncSession, user_id: uuid.UUID) -> dict[uuid.UUID, Role]:
    """The user's organizations and their role in each, as they are now."""
    rows = await session.execute(
        sa.select(Membership.org_id, Membership.role).where(Membership.user_id == user_id)
    )
    return dict(rows.all())


async def emails_of(session: AsyncSession, user_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The email of each of these users (to say who did something; unknown ids are left out)."""
    if not user_ids:
        return {}
    rows = await session.execute(sa.select(User.id, User.email).where(User.id.in_(user_ids)))
    return dict(rows.all())


async def bootstrap_admin(
    session: AsyncSession, *, org_name: str, email: str
) -> tuple[uuid.UUID, uuid.UUID]:
    """An organization named `org_name` administered by the user of `email`, created (with
    the user, as a local user) unless that user already administers one of that name.
    The ids of the organization and the user."""
    user_id = await session.scalar(sa.select(User.id).where(User.email == email))
    if user_id is None:
        user_id = local_user_id(email)
        await provision_user(session, user_id=user_id, email=email)
    org_id = await session.scalar(
        sa.select(Organization.id)
        .join(Membership, Membership.org_id == Organization.id)
        .where(
            Organization.name == org_name,
            Membership.user_id == user_id,
            Membership.role == Role.ADMIN,
        )
        .limit(1)
    )
    if org_id is None:
        org_id = (await create_org(session, name=org_name, admin_id=user_id)).id
    return org_id, user_id
