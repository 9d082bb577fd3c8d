"""The organization's watchlist of sellers, each member's digest preferences, and the
digest of a run."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from app.api.deps import CanRun, CanView, Runs, SessionDep
from app.api.errors import AUTH_ERRORS, Responses
from app.core.pagination import Page, PageParams, page_params
from app.runs.changes import SellerChange
from app.runs.models import SellerChangeResponse
from app.watchlists import digest as digests, watchlist
from app.watchlists.models import (
    ComparedRun,
    DigestPreferencesResponse,
    DigestPreferencesUpdate,
    RunDigest,
    SellerUsername,
    WatchedSellerResponse,
)

router = APIRouter(tags=["watchlists"])

Username = Annotated[
    SellerUsername,
    Path(description="The seller's eBay username, exactly as runs list it (case matters)."),
]


@router.get("/collection/watchlist", response_model=Page[WatchedSellerResponse])
async def list_watchlist(
    ctx: CanView, session: SessionDep, page: Annotated[PageParams, Depends(page_params)]
) -> Page[WatchedSellerResponse]:
    """The sellers the organization watches, newest star first, each with who starred it
    and where runs last saw it."""
    entries, next_cursor = await watchlist.list_watchlist(session, org_id=ctx.org_id, page=page)
    return Page(
        items=[WatchedSellerResponse.model_validate(e) for e in entries], next_cursor=next_cursor
    )


@router.put(
    "/collection/watchlist/{username}",
    response_model=WatchedSellerResponse,
    responses={
        **AUTH_ERRORS,
        201: {"model": WatchedSellerResponse, "description": "Starred now."},
        409: {"description": "The watchlist is full (1000 sellers): unstar one first."},
    },
)
async def star_seller(
    username: Username, ctx: CanRun, session: SessionDep, response: Response
) -> WatchedSellerResponse:
    """Watch a seller for the organization: 201 when starred now, 200 when it was watched
    already (who starred it first, and when, stay). The seller need not be in any run yet."""
    entry, created = await watchlist.star(
        session, org_id=ctx.org_id, username=username, user_id=ctx.user_id
    )
    await session.commit()
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return WatchedSellerResponse.model_validate(entry)


NOT_WATCHED: Responses = {404: {"description": "The seller is not on the watchlist."}}


@router.delete(
    "/collection/watchlist/{username}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**AUTH_ERRORS, **NOT_WATCHED},
)
async def unstar_seller(username: Username, ctx: CanRun, session: SessionDep) -> Response:
    """Stop watching a seller (for the whole organization)."""
    await watchlist.unstar(session, org_id=ctx.org_id, username=username)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me/digest", response_model=DigestPreferencesResponse, responses=AUTH_ERRORS)
async def get_digest_preferences(ctx: CanView, session: SessionDep) -> DigestPreferencesResponse:
    """Your digest preferences in the acting organization (the defaults until you change
    them: not subscribed, top 10, 5 places)."""
    wanted = await digests.preferences(session, org_id=ctx.org_id, user_id=ctx.user_id)
    return DigestPreferencesResponse.model_validate(wanted)


@router.patch("/me/digest", response_model=DigestPreferencesResponse, responses=AUTH_ERRORS)
async def update_digest_preferences(
    body: DigestPreferencesUpdate, ctx: CanView, session: SessionDep
) -> DigestPreferencesResponse:
    """Change your digest preferences in the acting organization: `subscribed` (mail after
    each completed scheduled run), `top_n`, `rank_threshold`. Fields left out keep their
    value."""
    wanted = await digests.update_preferences(
        session,
        org_id=ctx.org_id,
        user_id=ctx.user_id,
        subscribed=body.subscribed,
        top_n=body.top_n,
        rank_threshold=body.rank_threshold,
    )
    await session.commit()
    return DigestPreferencesResponse.model_validate(wanted)


@router.get(
    "/collection/runs/{run_id}/digest",
    response_model=RunDigest,
    tags=["collection"],
    responses={
        **AUTH_ERRORS,
        404: {"description": "No such run in the acting organization."},
        410: {"description": "The run's results were deleted by the retention policy."},
    },
)
async def run_digest(run_id: uuid.UUID, ctx: CanView, session: SessionDep, runs: Runs) -> RunDigest:
    """The run's digest with your preferences: new sellers in your top N, and watched
    sellers that appeared, vanished or moved your threshold of places, since the previous
    completed run of the same preset. Without such a run, `compared_with` is null, `note`
    says why, and every section is empty. The mail after a scheduled run is this digest."""
    run = await runs.get_run(session, org_id=ctx.org_id, run_id=run_id)
    digest = await digests.run_digest(session, run, user_id=ctx.user_id)
    against = digest.against

    def items(changes: list[SellerChange]) -> list[SellerChangeResponse]:
        return [SellerChangeResponse.model_validate(change) for change in changes]

    return RunDigest(
        run_id=run.id,
        run_name=run.name,
        compared_with=ComparedRun.model_validate(against) if against else None,
        note=digest.note,
        preferences=DigestPreferencesResponse.model_validate(digest.preferences),
        new_in_top=items(digest.new_in_top),
        watched_appeared=items(digest.watched_appeared),
        watched_vanished=items(digest.watched_vanished),
        watched_moved=items(digest.watched_moved),
    )
