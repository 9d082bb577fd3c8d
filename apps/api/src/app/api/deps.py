"""Every request-scoped dependency of the API, once: the database session, the instance's
parts, and the acting organization with the permission a route needs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import OrgContext, require_permission_key
from app.core.config import Settings
from app.core.database import Database
from app.instance import instance_of
from app.runs.commands import RunCommands
from app.runs.lifecycle import RunLifecycle
from app.scheduling.commands import ScheduleCommands
from app.scheduling.schedules import ScheduleService


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session for this request; commands commit it explicitly, anything else rolls back.

    Read-only methods get a read session, which on SQLite does not take the write lock.
    """
    database = instance_of(request).database
    factory = database.read_sessions if request.method in ("GET", "HEAD") else database.sessions
    async with factory() as session:
        yield session


def get_database(request: Request) -> Database:
    """The database, for work that opens its own transactions (a streamed export)."""
    return instance_of(request).database


def get_settings(request: Request) -> Settings:
    """The instance's settings."""
    return instance_of(request).settings


def get_runs(request: Request) -> RunLifecycle:
    """Reads and rules of runs."""
    return instance_of(request).runs


def get_run_commands(request: Request) -> RunCommands:
    """Create, start, pause, resume and cancel runs."""
    return instance_of(request).run_commands


def get_schedules(request: Request) -> ScheduleService:
    """Reads of schedules and their fires."""
    return instance_of(request).schedules


def get_schedule_commands(request: Request) -> ScheduleCommands:
    """Change and trigger schedules."""
    return instance_of(request).schedule_commands


SessionDep = Annotated[AsyncSession, Depends(get_session)]
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
