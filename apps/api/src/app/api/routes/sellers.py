"""Sellers across runs: the organization's seller directory and one seller's history."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query

from app.api.deps import CanView, SessionDep
from app.api.errors import AUTH_ERRORS
from app.core.pagination import Page, PageParams, keyset_params
from app.core.text import REFUSED_CLASS
from app.runs import directory_pages
from app.runs.directory_pages import USERNAME_LENGTH
from app.runs.models import DirectorySellerResponse, SellerDetailResponse

router = APIRouter(prefix="/collection", tags=["sellers"])


@router.get(
    "/sellers",
    response_model=Page[DirectorySellerResponse],
    responses={
        **AUTH_ERRORS,
        404: {"description": "`preset_id` is not a preset of the acting organization."},
    },
)
async def list_sellers(
    ctx: CanView,
    session: SessionDep,
    page: Annotated[PageParams, Depends(keyset_params)],
    q: Annotated[
        str | None,
        Query(
            max_length=USERNAME_LENGTH,
            pattern=f"^[^{REFUSED_CLASS}]*$",
            description="Only sellers whose username contains this text, regardless of case.",
        ),
    ] = None,
    sort: Annotated[
        directory_pages.DirectorySort,
        Query(
            description="`last_seen` (default), `first_seen`, `runs_seen`, `rank` and "
            "`products` (in the latest run that saw the seller), or `username`. Ties: the "
            "better rank, then the username."
        ),
    ] = "last_seen",
    order: Annotated[
        Literal["asc", "desc"] | None,
        Query(
            description="Direction of `sort`. Default: newest and most first (`desc`) for "
            "dates and counts, best first (`asc`) for `rank`, A to Z for `username`."
        ),
    ] = None,
    preset_id: Annotated[
        uuid.UUID | None,
        Query(
            description="Only the runs of this preset (also after it was deleted): first and "
            "last seen, runs, rank and trend among them."
        ),
    ] = None,
) -> Page[DirectorySellerResponse]:
    """Every seller the organization's completed runs saw: first and last seen (creation
    times of the runs), how many runs saw it, its rank and products in the latest run
    that saw it, and its trend in that run's preset. Kept as runs complete, so retention
    deleting old results leaves the directory as it is."""
    entries, next_cursor = await directory_pages.list_directory(
        session,
        org_id=ctx.org_id,
        preset_id=preset_id,
        query=q,
        sort=sort,
        descending=None if order is None else order == "desc",
        cursor=page.cursor,
        limit=page.limit,
    )
    return Page(
        items=[DirectorySellerResponse.model_validate(entry) for entry in entries],
        next_cursor=next_cursor,
    )


@router.get(
    "/sellers/{username}",
    response_model=SellerDetailResponse,
    responses={
        **AUTH_ERRORS,
        404: {"description": "None of the acting organization's completed runs saw the seller."},
    },
)
async def get_seller(
    username: Annotated[
        str,
        Path(
            max_length=USERNAME_LENGTH,
            pattern=f"^[^{REFUSED_CLASS}]+$",
            description="The eBay username, exactly as the runs list it.",
        ),
    ],
    ctx: CanView,
    session: SessionDep,
) -> SellerDetailResponse:
    """One seller across the organization's completed runs: the directory's figures, the
    same per preset with the seller's rank, products, listings and prices in each of its
    runs (runs whose results retention deleted are counted but no longer listed), and its
    listings in the latest run that saw it, each with its Amazon product."""
    detail = await directory_pages.seller_detail(session, org_id=ctx.org_id, username=username)
    return SellerDetailResponse.model_validate(detail)
