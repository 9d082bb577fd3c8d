"""Request-scoped dependencies shared by the routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.database import Database


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session for this request; routers commit it explicitly, anything else rolls back.

    Read-only methods get a read session, which on SQLite does not take the write lock.
    """
    database: Database = request.app.state.database
    factory = database.read_sessions if request.method in ("GET", "HEAD") else database.sessions
    async with factory() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
