"""A seller in a run: its figures, and each of its listings next to the Amazon price of the
product with the estimated margin (what GET /collection/runs/{id}/listings?seller= gives)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, status
from fastapi.responses import Response

from app.api.deps import Runs, SessionDep
from app.errors import InvalidError, NotFoundError
from app.models import RunResponse
from app.runs import listings
from app.runs.results import ResultsPurgedError
from app.web.errors import WebError
from app.web.rendering import render
from app.web.session import CanView

router = APIRouter(include_in_schema=False)

LISTINGS_PER_PAGE = 50


@router.get("/runs/{run_id}/sellers/{username:path}")
async def seller_page(
    request: Request,
    run_id: str,
    username: str,
    context: CanView,
    session: SessionDep,
    runs: Runs,
    cursor: str | None = None,
) -> Response:
    """One seller of a run: rank, figures and its listings with estimated margins."""
    missing = (
        f"This run is not in {context.org_name}: it was deleted, or it belongs to another of "
        "your organizations (switch organization above), or the link is mistyped."
    )
    try:
        row = await runs.get_run(session, org_id=context.org.org_id, run_id=uuid.UUID(run_id))
    except (ValueError, NotFoundError):
        raise WebError(status.HTTP_404_NOT_FOUND, missing) from None
    run = RunResponse.model_validate(row)
    try:
        seller = await listings.seller_in_run(session, row, username)
        if seller is None:
            raise WebError(
                status.HTTP_404_NOT_FOUND,
                f"No seller named {username!r} has listings in the run {run.name}: the name "
                "is mistyped, or the seller appears in another run.",
            )
        items, next_cursor = await listings.list_listings(
            session, row, seller=username, cursor=cursor, limit=LISTINGS_PER_PAGE
        )
    except ResultsPurgedError:
        raise WebError(
            status.HTTP_410_GONE,
            "The results of this run were deleted by the retention policy. Start a new run "
            "to collect fresh data.",
        ) from None
    except InvalidError:
        raise WebError(
            status.HTTP_400_BAD_REQUEST,
            "This page link is not valid any more: start again from the seller's first page.",
        ) from None
    return render(
        request,
        "runs/seller.html",
        nav="runs",
        run=run,
        seller=seller,
        listings=items,
        cursor=cursor,
        next_cursor=next_cursor,
    )
