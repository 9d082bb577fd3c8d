"""Web sessions kept on the server, and the one-time sign-in links that open them.

A browser's cookie holds a random token; the table keeps its SHA-256 only. A session ends
when its user signs out (here or everywhere), after `WEB_SESSION_IDLE_SECONDS` without a
request, or `WEB_SESSION_MAX_SECONDS` after sign-in. Memberships are not part of the
session: they are read on every request (with the session, in one statement), so a
member removed from an organization loses access to it at once, while their session (and
their other organizations) stay theirs.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app import users as user_service
from app.core.database import Database
from app.tables import Membership, Organization, Role, SignInLink, User, WebSession

TOUCH_INTERVAL = timedelta(minutes=1)
"""`last_seen_at` is written at most this often per session (every page reads it)."""

SIGN_IN_LINK_LIFETIME = timedelta(minutes=15)
"""How long a one-time sign-in link works (once)."""

LOCAL_OPERATOR_EMAIL = "admin@localhost"
"""Whom a sign-in link for "the operator" signs in while no organization has an admin."""


class SessionEndedError(Exception):
    """The session cookie no longer signs anyone in; the message says why (safe to show)."""


class SignInLinkRefusedError(Exception):
    """A sign-in link that is unknown, used or expired; the message says which."""


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """How long sessions last: idle time and overall lifetime."""

    idle_timeout: timedelta
    max_age: timedelta


@dataclass(frozen=True, slots=True)
class SignedIn:
    """The user behind a live session, with their memberships as they are now."""

    session_id: uuid.UUID
    user_id: uuid.UUID
    email: str
    memberships: dict[uuid.UUID, Role]
    org_names: dict[uuid.UUID, str]
    last_seen_at: datetime

    def needs_touch(self, now: datetime) -> bool:
        """Whether this use should move the session's `last_seen_at` (`touch`)."""
        return now - self.last_seen_at >= TOUCH_INTERVAL


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _ended(
    revoked_at: datetime | None,
    expires_at: datetime,
    last_seen_at: datetime,
    *,
    now: datetime,
    policy: SessionPolicy,
) -> str | None:
    """Why the session is over, or None while it lasts."""
    if revoked_at is not None:
        return "you signed out"
    if now >= expires_at:
        return "it reached its maximum age; sign in again"
    if now >= last_seen_at + policy.idle_timeout:
        return "it was not used for a while"
    return None


async def start_session(
    session: AsyncSession, *, user_id: uuid.UUID, now: datetime, policy: SessionPolicy
) -> str:
    """Open a session for `user_id`; return the token for the cookie (never stored)."""
    # Sessions that are over are of no use to anyone: forget them at each sign-in, so the
    # table stays about the size of the live sessions without a sweeper.
    await session.execute(
        sa.delete(WebSession).where(
            sa.or_(
                WebSession.revoked_at.is_not(None),
                WebSession.expires_at <= now,
                WebSession.last_seen_at <= now - policy.idle_timeout,
            ),
        )
    )
    token = secrets.token_urlsafe(32)
    session.add(
        WebSession(
            token_hash=_digest(token),
            user_id=user_id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + policy.max_age,
        )
    )
    await session.flush()
    return token


async def signed_in(
    session: AsyncSession, *, token: str, now: datetime, policy: SessionPolicy
) -> SignedIn:
    """The user of a session token, if the session lasts, with their memberships and the
    names of their organizations.

    One statement, so a request can run it as its transaction's first; the caller moves
    `last_seen_at` when `SignedIn.needs_touch` says so (`touch`).
    """
    rows = (await session.execute(_SIGNED_IN, {"token_hash": _digest(token)})).all()
    if not rows:
        raise SessionEndedError("this browser's session is not known here")
    first = rows[0]
    reason = _ended(first.revoked_at, first.expires_at, first.last_seen_at, now=now, policy=policy)
    if reason is not None:
        raise SessionEndedError(reason)
    joined = [row for row in rows if row.org_id is not None]
    return SignedIn(
        session_id=first.id,
        user_id=first.user_id,
        email=first.email,
        memberships={row.org_id: row.role for row in joined},
        org_names={row.org_id: row.org_name for row in joined},
        last_seen_at=first.last_seen_at,
    )


async def touch(database: Database, *, session_id: uuid.UUID, now: datetime) -> None:
    """Count the session as used now: a short write transaction of its own (at most once
    a minute per session: see `SignedIn.needs_touch`)."""
    async with database.transaction() as session:
        await session.execute(
            sa.update(WebSession)
            .where(WebSession.id == session_id, WebSession.last_seen_at < now - TOUCH_INTERVAL)
            .values(last_seen_at=now)
        )


# Built once, of the tables' columns: every page and every poll of a page runs it.
_sessions, _users = WebSession.__table__, User.__table__
_memberships, _organizations = Membership.__table__, Organization.__table__
_SIGNED_IN = (
    sa.select(
        _sessions.c.id,
        _sessions.c.user_id,
        _sessions.c.revoked_at,
        _sessions.c.expires_at,
        _sessions.c.last_seen_at,
        _users.c.email,
        _memberships.c.org_id,
        _memberships.c.role,
        _organizations.c.name.label("org_name"),
    )
    .select_from(
        _sessions.join(_users, _users.c.id == _sessions.c.user_id)
        .outerjoin(_memberships, _memberships.c.user_id == _sessions.c.user_id)
        .outerjoin(_organizations, _organizations.c.id == _memberships.c.org_id)
    )
    .where(_sessions.c.token_hash == sa.bindparam("token_hash"))
)


async def live_sessions(
    session: AsyncSession, *, user_id: uuid.UUID, now: datetime, policy: SessionPolicy
) -> list[WebSession]:
    """The user's sessions that still sign them in, most recently used first."""
    rows = await session.scalars(
        sa.select(WebSession)
        .where(
            WebSession.user_id == user_id,
            WebSession.revoked_at.is_(None),
            WebSession.expires_at > now,
            WebSession.last_seen_at > now - policy.idle_timeout,
        )
        .order_by(WebSession.last_seen_at.desc(), WebSession.id)
    )
    return list(rows.all())


async def revoke_session(session: AsyncSession, *, session_id: uuid.UUID, now: datetime) -> None:
    """End one session (signing out)."""
    await session.execute(
        sa.update(WebSession)
        .where(WebSession.id == session_id, WebSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def revoke_user_sessions(session: AsyncSession, *, user_id: uuid.UUID, now: datetime) -> int:
    """End every session of the user (signing out everywhere); return how many were live."""
    result = await session.execute(
        sa.update(WebSession)
        .where(WebSession.user_id == user_id, WebSession.revoked_at.is_(None))
        .values(revoked_at=now)
        .returning(WebSession.id)
    )
    return len(result.all())


# --- one-time sign-in links --------------------------------------------------------------------


async def operator_email(session: AsyncSession) -> str:
    """Whom a link for "the operator" signs in: the first admin of any organization, or
    else the local operator account (who can then create the first organization)."""
    first_admin = await session.scalar(
        sa.select(User.email)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.role == Role.ADMIN)
        .order_by(Membership.created_at, User.email)
        .limit(1)
    )
    return first_admin or LOCAL_OPERATOR_EMAIL


async def issue_sign_in_link(
    session: AsyncSession,
    *,
    email: str,
    now: datetime,
    lifetime: timedelta = SIGN_IN_LINK_LIFETIME,
) -> str:
    """A new one-time code that signs in `email` once, within `lifetime`."""
    await session.execute(
        sa.delete(SignInLink).where(
            sa.or_(SignInLink.used_at.is_not(None), SignInLink.expires_at <= now)
        )
    )
    code = secrets.token_urlsafe(32)
    session.add(
        SignInLink(
            code_hash=_digest(code),
            email=email.strip().lower(),
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    await session.flush()
    return code


async def redeem_sign_in_link(session: AsyncSession, *, code: str, now: datetime) -> str:
    """Use up `code`; return the email it signs in (one atomic step: it works only once,
    even when two browsers open it at the same moment)."""
    used = await session.scalar(
        sa.update(SignInLink)
        .where(
            SignInLink.code_hash == _digest(code),
            SignInLink.used_at.is_(None),
            SignInLink.expires_at > now,
        )
        .values(used_at=now)
        .returning(SignInLink.email)
    )
    if used is not None:
        return str(used)
    link = await session.get(SignInLink, _digest(code))
    if link is None:
        raise SignInLinkRefusedError(
            "This sign-in link is not known here (mistyped or cut short?)."
        )
    if link.used_at is not None:
        raise SignInLinkRefusedError("This sign-in link was already used: each works only once.")
    minutes = round((link.expires_at - link.created_at).total_seconds() / 60)
    raise SignInLinkRefusedError(
        f"This sign-in link has expired (links work for {minutes} minutes)."
    )


async def user_for_email(session: AsyncSession, email: str) -> uuid.UUID:
    """The id of the user with `email`, provisioning them (with the id `collection-api
    token` gives that email) when they never signed in."""
    user_id = await session.scalar(sa.select(User.id).where(User.email == email))
    if user_id is None:
        user_id = user_service.local_user_id(email)
        await user_service.provision_user(session, user_id=user_id, email=email)
    return user_id
