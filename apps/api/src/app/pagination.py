"""Keyset pagination, newest first, with opaque cursors: `{"items": [...], "next_cursor": ...}`."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

import sqlalchemy as sa
from fastapi import HTTPException, Query, status
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


ItemT = TypeVar("ItemT")
RowT = TypeVar("RowT")


class Page(BaseModel, Generic[ItemT]):
    """One page of a list, newest first; pass `next_cursor` back as `cursor` for the next."""

    items: list[ItemT]
    next_cursor: str | None = Field(
        description="Opaque; absent (null) on the last page.", examples=[None]
    )


class PageParams(BaseModel):
    """`?cursor=&limit=` of every list endpoint."""

    cursor: str | None = None
    limit: int = DEFAULT_LIMIT


def page_params(
    cursor: Annotated[
        str | None, Query(description="`next_cursor` of the previous page; omit for the first.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")] = DEFAULT_LIMIT,
) -> PageParams:
    """Dependency reading the pagination query parameters."""
    return PageParams(cursor=cursor, limit=limit)


def _encode(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, row_id = json.loads(raw)
        position = datetime.fromisoformat(created_at), uuid.UUID(row_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            detail="cursor is not valid: pass the next_cursor of a previous page unchanged",
        ) from None
    if position[0].tzinfo is None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="cursor is not valid")
    return position


async def paginate(
    session: AsyncSession,
    statement: sa.Select[RowT],
    *,
    created_at: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[uuid.UUID],
    params: PageParams,
) -> tuple[list[RowT], str | None]:
    """Run `statement` newest first from the cursor on; return the rows and the next cursor."""
    if params.cursor is not None:
        after_at, after_id = _decode(params.cursor)
        statement = statement.where(
            sa.or_(created_at < after_at, sa.and_(created_at == after_at, row_id < after_id))
        )
    statement = statement.order_by(created_at.desc(), row_id.desc()).limit(params.limit + 1)
    rows: list[Any] = list((await session.scalars(statement)).all())
    if len(rows) <= params.limit:
        return rows, None
    rows = rows[: params.limit]
    last = rows[-1]
    return rows, _encode(getattr(last, created_at.key), getattr(last, row_id.key))


def encode_offset(offset: int) -> str:
    """Cursor for lists ranked by an aggregate (no stable key to seek by)."""
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode().rstrip("=")


def decode_offset(cursor: str | None) -> int:
    """The offset in a cursor made by `encode_offset` (0 for the first page)."""
    if cursor is None:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        offset = json.loads(raw)["offset"]
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        offset = None
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            detail="cursor is not valid: pass the next_cursor of a previous page unchanged",
        )
    return offset
