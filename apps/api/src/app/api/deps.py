"""Every request-scoped dependency of the API, once: the database session, who is asking
and the organization they act in (with the permission a route needs), and the
instance's parts.

Who is asking is looked up in the request's own session, as its transaction's first
statement, so a request is one transaction (and one pooled connection) from its first
statement to its last: a revoked membership, a changed role or a deleted user is seen by
the next request on any replica, without a cache to keep in step.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app import users as user_service
from app.auth import ALL_PERMISSIONS, OrgContext, Principal, org_context, permitted, verified_claims
from app.core.config import Settings
from app.core.database import Database, DbActor, acting_as
from app.instance import instance_of
from app.runs.commands import RunCommands
from app.runs.lifecycle import RunLifecycle
from app.scheduling.commands import ScheduleCommands
from app.scheduling.schedules import ScheduleService


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session for this request; commands commit it explicitly, anything else rolls back.

    Read-only methods get a read session, which on SQLite does not take the write lock
    (and refuses to write: see `WriteInReadSessionError`).
    """
    database = instance_of(request).database
    factory = database.read_sessions if request.method in ("GET", "HEAD") else database.sessions
    async with factory() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

_bearer = HTTPBearer(auto_error=False, description="JWT signed with JWT_SECRET or a JWKS key")


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    session: SessionDep,
) -> AsyncIterator[Principal]:
    """Authenticate the request and provision its user on first sight.

    The user's memberships are read by the request's session, acting as this user; a
    user seen for the first time (or with a new email, or invited since) is provisioned
    in a write transaction of its own first. While the request runs, its statements act
    as this user (PostgreSQL row-level security sees who asks), in no organization until
    `get_org_context` picks one.
    """
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing bearer token: send 'Authorization: Bearer <JWT>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    claims = await verified_claims(request, credentials.credentials)
    with acting_as(DbActor(user_id=claims.user_id)):
        memberships = await user_service.provisioned_memberships(
            session, user_id=claims.user_id, email=claims.email
        )
        if memberships is None:
            # The request's transaction must not hold SQLite's write lock (or a snapshot
            # from before the user existed) while the user is written.
            await session.rollback()
            memberships = await user_service.provision(
                instance_of(request).database, user_id=claims.user_id, email=claims.email
            )
        yield Principal(user_id=claims.user_id, email=claims.email, memberships=memberships)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def get_org_context(
    principal: CurrentPrincipal,
    x_org_id: Annotated[
        str | None,
        Header(
            description="Organization to act in; needed only with several memberships.",
            json_schema_extra={"format": "uuid"},
        ),
    ] = None,
) -> AsyncIterator[OrgContext]:
    """The organization the request acts in: the only membership, or the one in X-Org-Id.

    From here on the request's database statements act in this organization: row-level
    security shows them its rows and no other organization's.
    """
    ctx = org_context(principal, x_org_id)
    with acting_as(DbActor(user_id=ctx.user_id, org_id=ctx.org_id)):
        yield ctx


CurrentOrg = Annotated[OrgContext, Depends(get_org_context)]


def require_permission_key(key: str) -> Callable[[OrgContext], Awaitable[OrgContext]]:
    """A dependency that admits only users whose role grants permission `key`."""
    if key not in ALL_PERMISSIONS:
        raise ValueError(f"unknown permission key {key!r}")

    async def _require(ctx: CurrentOrg) -> OrgContext:
        return permitted(ctx, key)

    _require.__name__ = f"require_{key.replace('.', '_')}"
    return _require


# Plain functions would run in a thread pool (FastAPI's rule for `def` dependencies): a
# thread hop per request for a getter. These are coroutines for that reason alone.


async def get_database(request: Request) -> Database:
    """The database, for work that opens its own transactions (a streamed export)."""
    return instance_of(request).database


async def get_settings(request: Request) -> Settings:
    """The instance's settings."""
    return instance_of(request).settings


async def get_runs(request: Request) -> RunLifecycle:
    """Reads and rules of runs."""
    return instance_of(request).runs


async def get_run_commands(request: Request) -> RunCommands:
    """Create, start, pause, resume and cancel runs."""
    return instance_of(request).run_commands


async def get_schedules(request: Request) -> ScheduleService:
    """Reads of schedules and their fires."""
    return instance_of(request).schedules


async def get_schedule_commands(request: Request) -> ScheduleCommands:
    """Change and trigger schedules."""
    return instance_of(request).schedule_commands


DatabaseDep = Annotated[Database, Depends(get_database)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
Runs = Annotated[RunLifecycle, Depends(get_runs)]
RunCommandsDep = Annotated[RunCommands, Depends(get_run_commands)]
Schedules = Annotated[ScheduleService, Depends(get_schedules)]
ScheduleCommandsDep = Annotated[ScheduleCommands, Depends(get_schedule_commands)]

# The acting organization, admitted only if the caller's role grants the permission.
CanView = Annotated[OrgContext, Depends(require_permission_key("collection.view"))]
CanRun = Annotated[OrgContext, Depends(require_permission_key("collection.run"))]
CanManagePresets = Annotated[OrgContext, Depends(require_permission_key("presets.manage"))]
CanManageMembers = Annotated[OrgContext, Depends(require_permission_key("members.manage"))]
CanAutomate = Annotated[OrgContext, Depends(require_permission_key("admin.automation"))]
CanChangeSettings = Annotated[OrgContext, Depends(require_permission_key("org.settings"))]
