"""The watchlist page, the star buttons beside sellers, the digest on a run's page and the
digest preferences on the account page.

Every change goes through the same domain functions as the API (`app.watchlists`), with
the same permission: reading needs `collection.view`, starring `collection.run`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import SessionDep
from app.core.database import DbActor, acting_as
from app.core.pagination import PageParams
from app.instance import instance_of
from app.tables import CollectionRun, RunStatus
from app.watchlists import digest as digests, watchlist
from app.watchlists.models import DigestPreferencesUpdate, seller_username
from app.web.errors import field_errors
from app.web.rendering import flash, render
from app.web.session import CanRun, CanView, WebContext, safe_next

router = APIRouter(include_in_schema=False)

WATCHED_PER_PAGE = 50


async def _page(
    request: Request,
    context: WebContext,
    session: AsyncSession,
    *,
    cursor: str | None = None,
    username: str = "",
    errors: dict[str, str] | None = None,
    status_code: int = status.HTTP_200_OK,
) -> Response:
    entries, next_cursor = await watchlist.list_watchlist(
        session,
        org_id=context.org.org_id,
        page=PageParams(cursor=cursor, limit=WATCHED_PER_PAGE),
    )
    return render(
        request,
        "watchlist.html",
        status_code=status_code,
        nav="watchlist",
        entries=entries,
        cursor=cursor,
        next_cursor=next_cursor,
        username=username,
        errors=errors or {},
        most=watchlist.MAX_WATCHED,
    )


@router.get("/watchlist")
async def watchlist_page(
    request: Request, context: CanView, session: SessionDep, cursor: str | None = None
) -> Response:
    """The sellers the organization watches, newest star first, and where runs last saw
    each; members who may run collections add and remove them here."""
    return await _page(request, context, session, cursor=cursor)


@router.post("/watchlist/star")
async def star(
    request: Request,
    context: CanRun,
    session: SessionDep,
    username: Annotated[str, Form()] = "",
    next_field: Annotated[str, Form(alias="next")] = "/watchlist",
) -> Response:
    """Watch a seller (PUT /collection/watchlist/{username}), then back to the page the
    star was pressed on. A name the form's field refuses is shown at the field."""
    try:
        name = seller_username(username.strip())
    except ValueError as exc:
        return await _page(
            request,
            context,
            session,
            username=username,
            errors={"username": f"The seller's username {exc}."},
            status_code=status.HTTP_400_BAD_REQUEST,
        )
    try:
        _, created = await watchlist.star(
            session, org_id=context.org.org_id, username=name, user_id=context.org.user_id
        )
        await session.commit()
    except watchlist.WatchlistFullError as exc:
        await session.rollback()
        return await _page(
            request,
            context,
            session,
            username=username,
            errors={"username": f"Not added: {exc.message}."},
            status_code=status.HTTP_409_CONFLICT,
        )
    done = f"Watching {name}." if created else f"{name} was on the watchlist already."
    return _back(request, next_field, f"{done} Digests tell when it appears, goes or moves.")


@router.post("/watchlist/unstar")
async def unstar(
    request: Request,
    context: CanRun,
    session: SessionDep,
    username: Annotated[str, Form()] = "",
    next_field: Annotated[str, Form(alias="next")] = "/watchlist",
) -> Response:
    """Stop watching a seller (DELETE /collection/watchlist/{username})."""
    try:
        await watchlist.unstar(session, org_id=context.org.org_id, username=username)
        await session.commit()
    except watchlist.NotWatchedError:
        return _back(request, next_field, f"{username} was not on the watchlist.")
    return _back(request, next_field, f"No longer watching {username}.")


def _back(request: Request, target: str, message: str) -> Response:
    response = RedirectResponse(
        safe_next(target, "/watchlist"), status_code=status.HTTP_303_SEE_OTHER
    )
    return flash(response, request, message)


# --- on other pages -------------------------------------------------------------------------


async def watched_sellers(
    session: AsyncSession, row: CollectionRun, usernames: list[str]
) -> set[str]:
    """Which sellers of a page of the run's ranking the organization watches."""
    return await watchlist.watched_among(session, org_id=row.org_id, usernames=usernames)


async def run_digest(
    session: AsyncSession, context: WebContext, row: CollectionRun
) -> digests.Digest | None:
    """The digest of a completed run for the signed-in member; None for other runs (their
    changes are not final, or not a collection's end)."""
    if row.status is not RunStatus.COMPLETED or row.results_purged_at is not None:
        return None
    return await digests.run_digest(session, row, user_id=context.org.user_id)


async def account_preferences(request: Request, context: WebContext | None) -> dict[str, Any]:
    """What the account page shows of the digest: the preferences in the acting
    organization (read acting in it: they are the member's own rows there)."""
    if context is None:
        return {"digest": None}
    with acting_as(DbActor(user_id=context.org.user_id, org_id=context.org.org_id)):
        async with instance_of(request).database.read() as session:
            wanted = await digests.preferences(
                session, org_id=context.org.org_id, user_id=context.org.user_id
            )
    values = {
        "subscribed": "on" if wanted.subscribed else "",
        "top_n": str(wanted.top_n),
        "rank_threshold": str(wanted.rank_threshold),
    }
    return {"digest": wanted, "digest_values": values, "digest_errors": {}}


def parse_preferences(
    subscribed: str, top_n: str, rank_threshold: str
) -> DigestPreferencesUpdate | dict[str, str]:
    """The account form's fields as the API's update, or the form's errors by field."""
    fields = {
        "subscribed": bool(subscribed),
        "top_n": top_n.strip(),
        "rank_threshold": rank_threshold.strip(),
    }
    try:
        return DigestPreferencesUpdate.model_validate(fields)
    except ValidationError as exc:
        return field_errors(exc)


async def save_preferences(
    session: AsyncSession, context: WebContext, body: DigestPreferencesUpdate
) -> digests.Preferences:
    """Save the account form's preferences (PATCH /me/digest)."""
    wanted = await digests.update_preferences(
        session,
        org_id=context.org.org_id,
        user_id=context.org.user_id,
        subscribed=body.subscribed,
        top_n=body.top_n,
        rank_threshold=body.rank_threshold,
    )
    await session.commit()
    return wanted
