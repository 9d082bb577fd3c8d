"""Keyset pagination, newest first, with opaque cursors: `{"items": [...], "next_cursor": ...}`."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

import sqlalchemy as sa
from fastapi import Query
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.errors import InvalidError

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_CURSOR_LENGTH = 200
"""Cursors made here are under 100 characters; a longer one was not made here."""


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


async def page_params(
    cursor: Annotated[
        str | None,
        Query(
            description="`next_cursor` of the previous page; omit for the first.",
            json_schema_extra={"pattern": f"^[A-Za-z0-9_=-]{{1,{MAX_CURSOR_LENGTH}}}$"},
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")] = DEFAULT_LIMIT,
) -> PageParams:
    """Dependency reading the pagination query parameters."""
    return PageParams(cursor=cursor, limit=limit)


def _pack(text: str) -> str:
    """A cursor: `text` (JSON) in URL-safe base64 without its padding."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unpack(cursor: str, max_length: int = MAX_CURSOR_LENGTH) -> Any:
    """The JSON value in a cursor made by `_pack`; one of `_UNDECODABLE` if it is not one."""
    if len(cursor) > max_length:
        raise ValueError("cursor too long")
    return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))


def _encode(created_at: datetime, row_id: uuid.UUID) -> str:
    return _pack(json.dumps([created_at.isoformat(), str(row_id)]))


MAX_OFFSET = 2**31 - 1
INVALID_CURSOR = "cursor is not valid: pass the next_cursor of a previous page unchanged"
# What a tampered cursor can raise while it is decoded (RecursionError: deeply nested JSON;
# OverflowError: a moment that cannot be expressed in UTC).
_UNDECODABLE = (
    binascii.Error,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    UnicodeDecodeError,
    RecursionError,
    OverflowError,
)


def _decode(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created_at, row_id = _unpack(cursor)
        moment = datetime.fromisoformat(created_at)
        if moment.tzinfo is None:
            raise ValueError("naive timestamp")
        return moment.astimezone(UTC), uuid.UUID(row_id)
    except _UNDECODABLE:
        raise InvalidError(INVALID_CURSOR) from None


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
    return _pack(json.dumps({"offset": offset}))


def decode_offset(cursor: str | None) -> int:
    """The offset in a cursor made by `encode_offset` (0 for the first page)."""
    if cursor is None:
        return 0
    try:
        offset = _unpack(cursor)["offset"]
    except _UNDECODABLE:
        offset = None
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= MAX_OFFSET:
        raise InvalidError(INVALID_CURSOR)
    return offset


MAX_KEYSET_CURSOR_LENGTH = 800
"""A keyset cursor carries the last row's sort key, a name of up to 100 characters among
its values (up to 4 bytes each in UTF-8, 4/3 of that in base64)."""


def keyset_params(
    cursor: Annotated[
        str | None,
        Query(
            description="`next_cursor` of the previous page; omit for the first.",
            json_schema_extra={"pattern": f"^[A-Za-z0-9_=-]{{1,{MAX_KEYSET_CURSOR_LENGTH}}}$"},
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")] = DEFAULT_LIMIT,
) -> PageParams:
    """Dependency reading the pagination parameters of a list paged by its sort key."""
    return PageParams(cursor=cursor, limit=limit)


def encode_keyset(values: Sequence[Any]) -> str:
    """Cursor for lists paged by their sort key (keyset pagination): the last row's key,
    as JSON values. Deep pages cost what the first does, and rows added meanwhile neither
    repeat nor shift the pages that follow."""
    return _pack(json.dumps(list(values), ensure_ascii=False, separators=(",", ":")))


def decode_keyset(cursor: str) -> list[Any]:
    """The values in a cursor made by `encode_keyset` (400 when it was not made there; the
    caller checks each value's type)."""
    try:
        values = _unpack(cursor, MAX_KEYSET_CURSOR_LENGTH)
    except _UNDECODABLE:
        raise InvalidError(INVALID_CURSOR) from None
    if not isinstance(values, list):
        raise InvalidError(INVALID_CURSOR)
    return values


def encode_key(*parts: str) -> str:
    """Cursor for lists ordered by a key of strings (the key of the last item shown)."""
    return _pack(json.dumps({"key": parts}))


def decode_key(cursor: str, parts: int) -> tuple[str, ...]:
    """The key in a cursor made by `encode_key`, of `parts` strings."""
    try:
        key = _unpack(cursor)["key"]
    except _UNDECODABLE:
        key = None
    if (
        not isinstance(key, list)
        or len(key) != parts
        or not all(isinstance(part, str) and "\x00" not in part for part in key)
    ):  # (PostgreSQL refuses NUL in text: a forged one would be a 500)
        raise InvalidError(INVALID_CURSOR)
    return tuple(key)
