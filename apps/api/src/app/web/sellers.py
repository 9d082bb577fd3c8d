"""Sellers across runs: the directory of every seller the organization's runs saw
(GET /collection/sellers as a page) and one seller's history, charted per preset (GET
/collection/sellers/{username} as a page). Both read the same functions as the API."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from fastapi import APIRouter, Request, status
from fastapi.responses import Response

from app import presets as preset_service
from app.api.deps import SessionDep
from app.core.pagination import PageParams
from app.core.text import refused_character
from app.errors import InvalidError
from app.presets import PresetNotFoundError
from app.runs import directory_pages
from app.runs.directory_pages import (
    DESCENDING_BY_DEFAULT,
    USERNAME_LENGTH,
    DirectorySort,
    ScopeHistory,
    SellerNotFoundError,
    SellerRun,
)
from app.watchlists.watchlist import watched_among
from app.web.errors import WebError
from app.web.rendering import render
from app.web.session import CanView

router = APIRouter(include_in_schema=False)

SELLERS_PER_PAGE = 50
MAX_PRESETS = 200
"""Presets offered in the filter (an organization's latest)."""

SORTS: dict[DirectorySort, str] = {
    "last_seen": "Last seen",
    "first_seen": "First seen",
    "runs_seen": "Runs seen in",
    "rank": "Rank",
    "products": "Products",
    "username": "Username",
}


@router.get("/sellers")
async def directory_page(
    request: Request,
    context: CanView,
    session: SessionDep,
    q: str = "",
    sort: str = "last_seen",
    order: str = "",
    preset_id: str = "",
    cursor: str | None = None,
) -> Response:
    """Every seller the organization's completed runs saw, searchable and sortable, with
    its trend; of one preset's runs when one is chosen."""
    errors: dict[str, str] = {}
    query = q.strip()
    problem = refused_character(query)
    if problem is None and len(query) > USERNAME_LENGTH:
        problem = f"is at most {USERNAME_LENGTH} characters long"
    if problem is not None:
        errors["q"] = f"A username {problem}: search for part of it."
        query = ""
    chosen_sort = next((key for key in SORTS if key == sort), None)
    if chosen_sort is None:
        errors["sort"] = f"choose an order from the list, not {sort!r}"
        chosen_sort = "last_seen"
    if order not in ("", "asc", "desc"):
        order = ""
    chosen_preset = None
    if preset_id:
        try:
            chosen_preset = uuid.UUID(preset_id)
        except ValueError:
            errors["preset_id"] = "choose a preset from the list"
    descending = None if not order else order == "desc"
    try:
        entries, next_cursor = await directory_pages.list_directory(
            session,
            org_id=context.org.org_id,
            preset_id=chosen_preset,
            query=query or None,
            sort=chosen_sort,
            descending=descending,
            cursor=cursor,
            limit=SELLERS_PER_PAGE,
        )
    except PresetNotFoundError:
        errors["preset_id"] = "that preset is not one of this organization's"
        entries, next_cursor = await directory_pages.list_directory(
            session, org_id=context.org.org_id, limit=SELLERS_PER_PAGE
        )
        chosen_preset = None
    except InvalidError:
        raise WebError(
            status.HTTP_400_BAD_REQUEST,
            "This page link is not valid any more: start again from the first page.",
        ) from None
    presets, _ = await preset_service.list_presets(
        session, org_id=context.org.org_id, page=PageParams(limit=MAX_PRESETS)
    )
    usernames = [entry.username for entry in entries]
    descending_now = chosen_sort in DESCENDING_BY_DEFAULT if descending is None else descending
    return render(
        request,
        "sellers/list.html",
        status_code=status.HTTP_400_BAD_REQUEST if errors else status.HTTP_200_OK,
        nav="sellers",
        entries=entries,
        watched=await watched_among(session, org_id=context.org.org_id, usernames=usernames),
        next_cursor=next_cursor,
        cursor=cursor,
        q=query,
        sort=chosen_sort,
        order=order,
        descending=descending_now,
        sorts=SORTS,
        preset_id=str(chosen_preset) if chosen_preset else "",
        presets=presets,
        preset_names={preset.id: preset.name for preset in presets},
        errors=errors,
    )


@dataclass(frozen=True, slots=True)
class Charted:
    """A preset's history as the charts draw it: oldest run first, and the currency of the
    median prices drawn (runs priced in another currency are left out of that chart)."""

    runs: list[SellerRun]
    currency: str | None
    other_currencies: int


def charted(history: ScopeHistory) -> Charted:
    """The runs of `history` oldest first, with the currency of its latest priced run."""
    runs = list(reversed(history.runs))
    priced = [run.currency for run in history.runs if run.median_price is not None]
    currency = priced[0] if priced else None
    return Charted(runs, currency, sum(1 for code in priced if code != currency))


@router.get("/sellers/{username:path}")
async def seller_page(
    request: Request,
    username: str,
    context: CanView,
    session: SessionDep,
) -> Response:
    """One seller across the organization's runs: its figures now, its rank, products and
    median price over time for each preset (charts, and the same as a table), and its
    listings in the latest run that saw it."""
    try:
        if len(username) > USERNAME_LENGTH or refused_character(username):
            raise SellerNotFoundError(username)
        seller = await directory_pages.seller_detail(
            session, org_id=context.org.org_id, username=username
        )
    except SellerNotFoundError:
        raise WebError(
            status.HTTP_404_NOT_FOUND,
            f"No completed run of {context.org_name} saw a seller named {username!r}: the "
            "name is mistyped (case matters), or the seller is in another of your "
            "organizations (switch organization above), or only in runs that did not "
            "complete.",
        ) from None
    watched = await watched_among(session, org_id=context.org.org_id, usernames=[username])
    return render(
        request,
        "sellers/detail.html",
        nav="sellers",
        seller=seller,
        histories=[(history, charted(history)) for history in seller.history],
        watched=watched,
    )
