"""Collection runs: create and move them through their lifecycle, read their progress, and
their results (the ranked sellers, CSV exports)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, status
from fastapi.responses import StreamingResponse

from app.api.deps import (
    CanRun,
    CanView,
    DatabaseDep,
    RunCommandsDep,
    Runs,
    SessionDep,
    SettingsDep,
)
from app.api.errors import AUTH_ERRORS, Responses, invalid_query
from app.core.pagination import Page, PageParams, decode_offset, encode_offset, page_params
from app.core.text import REFUSED_CLASS
from app.errors import InvalidError
from app.models import RunCreate, RunEstimate, RunResponse, SellerPage, SellerResponse, UtcMoment
from app.runs import changes, estimate, listings, pace, results
from app.runs.lifecycle import RunFilter
from app.runs.listing_models import ListingPage, ListingResponse
from app.runs.models import (
    ChangesSummary,
    PriceChangeResponse,
    RunChanges,
    SellerChangeResponse,
)
from app.tables import CollectionRun, RunStatus, RunTrigger

router = APIRouter(prefix="/collection", tags=["collection"])


RUN_NOT_FOUND: Responses = {404: {"description": "No such run in the acting organization."}}
CONFLICT: Responses = {
    409: {"description": "Not allowed from the run's current status (the message names it)."}
}
GONE: Responses = {410: {"description": "The run's results were deleted by the retention policy."}}
LIFECYCLE_RESPONSES = {**AUTH_ERRORS, **RUN_NOT_FOUND, **CONFLICT}


@router.post(
    "/runs",
    response_model=RunResponse,
    status_code=status.HTTP_201_CREATED,
    responses={
        **AUTH_ERRORS,
        404: {"description": "The preset does not exist in the acting organization."},
        409: {
            "description": "The organization already has an active run (named), or the "
            "preset's saved categories cannot be run (edit the preset)."
        },
    },
)
async def create_run(
    body: RunCreate,
    ctx: CanRun,
    session: SessionDep,
    commands: RunCommandsDep,
    database: DatabaseDep,
    settings: SettingsDep,
) -> RunResponse:
    """Create a run (`pending`) of a preset or of explicit category IDs; start it with
    `POST /collection/runs/{id}/start`. One active run per organization. The answer's
    `estimate` says what it needs of the providers and when it should finish."""
    run = await commands.create(
        session,
        org_id=ctx.org_id,
        created_by=ctx.user_id,
        preset_id=body.preset_id,
        category_ids=body.category_ids,
        name=body.name,
        products_per_category=body.products_per_category,
        listings_per_product=body.listings_per_product,
    )
    now = commands.lifecycle.clock()
    found = await estimate.estimate_run(
        session, database, settings, org_id=ctx.org_id, work=run, now=now
    )
    return RunResponse.model_validate(run).model_copy(
        update={"estimate": RunEstimate.model_validate(found)}
    )


@router.post(
    "/runs/estimate",
    response_model=RunEstimate,
    responses={
        **AUTH_ERRORS,
        404: {"description": "The preset does not exist in the acting organization."},
        409: {"description": "The preset's saved categories cannot be run (edit the preset)."},
    },
)
async def estimate_new_run(
    body: RunCreate,
    ctx: CanRun,
    session: SessionDep,
    runs: Runs,
    database: DatabaseDep,
    settings: SettingsDep,
) -> RunEstimate:
    """What `POST /collection/runs` with the same body would need of the providers and
    when it should finish, without creating it: the eBay calls (and Keepa tokens), the
    budget left today, the organization's share of it and cap."""
    work = await estimate.planned(
        session,
        settings,
        org_id=ctx.org_id,
        preset_id=body.preset_id,
        category_ids=body.category_ids,
        products_per_category=body.products_per_category,
    )
    found = await estimate.estimate_run(
        session, database, settings, org_id=ctx.org_id, work=work, now=runs.clock()
    )
    return RunEstimate.model_validate(found)


async def run_filter(
    preset_id: Annotated[
        uuid.UUID | None,
        Query(description="Only runs made from this preset (also after it was deleted)."),
    ] = None,
    trigger: Annotated[
        list[RunTrigger] | None,
        Query(description="Only runs started this way (repeat for several)."),
    ] = None,
    status_filter: Annotated[
        list[RunStatus] | None,
        Query(alias="status", description="Only runs in these statuses (repeat for several)."),
    ] = None,
    since: Annotated[
        UtcMoment | None,
        Query(description="Only runs created at or after this moment (with its UTC offset)."),
    ] = None,
    until: Annotated[
        UtcMoment | None,
        Query(description="Only runs created before this moment (with its UTC offset)."),
    ] = None,
) -> RunFilter:
    """The list's filters; a `next_cursor` continues the list of the same filters."""
    if since is not None and until is not None and since >= until:
        message = f"until ({until.isoformat()}) must be after since ({since.isoformat()})"
        raise invalid_query("until", message, until.isoformat())
    return RunFilter(
        preset_id=preset_id,
        triggers=tuple(dict.fromkeys(trigger or ())),
        statuses=tuple(dict.fromkeys(status_filter or ())),
        since=since,
        until=until,
    )


@router.get("/runs", response_model=Page[RunResponse], responses=AUTH_ERRORS)
async def list_runs(
    ctx: CanView,
    session: SessionDep,
    runs: Runs,
    page: Annotated[PageParams, Depends(page_params)],
    only: Annotated[RunFilter, Depends(run_filter)],
) -> Page[RunResponse]:
    """Runs of the acting organization, newest first; filtered by preset, trigger
    (`?trigger=manual&trigger=schedule`), status (repeatable too) and creation time
    (`since` inclusive, `until` exclusive, each with its UTC offset). Pass `next_cursor`
    back with the same filters. `elapsed_seconds` is set; `eta` only for one run."""
    rows, next_cursor = await runs.list_runs(session, org_id=ctx.org_id, page=page, only=only)
    now = runs.clock()
    items = [
        RunResponse.model_validate(row).model_copy(update={"elapsed_seconds": _seconds(row, now)})
        for row in rows
    ]
    return Page(items=items, next_cursor=next_cursor)


def _seconds(row: CollectionRun, now: datetime) -> int | None:
    elapsed = pace.elapsed(row, now)
    return None if elapsed is None else int(elapsed.total_seconds())


@router.get(
    "/runs/{run_id}", response_model=RunResponse, responses={**AUTH_ERRORS, **RUN_NOT_FOUND}
)
async def get_run(
    run_id: uuid.UUID,
    ctx: CanView,
    session: SessionDep,
    runs: Runs,
    database: DatabaseDep,
    settings: SettingsDep,
) -> RunResponse:
    """One run with its phase and progress counters, how long it has been going and, while
    it runs, about how long it has left (`eta`: from the pace of its latest checkpoints);
    until it finishes, what it still needs of the providers' budgets (`estimate`)."""
    run = await runs.get_run(session, org_id=ctx.org_id, run_id=run_id)
    now = runs.clock()
    timing = await pace.timing(session, run, now=now)
    found = None
    if run.finished_at is None:
        found = await estimate.estimate_run(
            session,
            database,
            settings,
            org_id=ctx.org_id,
            work=run,
            now=now,
            remaining=timing.remaining,
        )
    return pace.timed(run, timing, None if found is None else RunEstimate.model_validate(found))


@router.post("/runs/{run_id}/start", response_model=RunResponse, responses=LIFECYCLE_RESPONSES)
async def start_run(
    run_id: uuid.UUID, ctx: CanRun, session: SessionDep, commands: RunCommandsDep
) -> RunResponse:
    """pending → running: the run executes in the background."""
    run = await commands.start(session, org_id=ctx.org_id, run_id=run_id)
    return RunResponse.model_validate(run)


@router.post("/runs/{run_id}/pause", response_model=RunResponse, responses=LIFECYCLE_RESPONSES)
async def pause_run(
    run_id: uuid.UUID, ctx: CanRun, session: SessionDep, commands: RunCommandsDep
) -> RunResponse:
    """running → pausing → paused: no new provider call starts; the calls in flight finish
    and are checkpointed (they are paid for) while the run reads `pausing`; then it reads
    `paused` and nothing about it changes until it is resumed. A run that no instance is
    executing is `paused` at once."""
    run = await commands.pause(session, org_id=ctx.org_id, run_id=run_id)
    return RunResponse.model_validate(run)


@router.post("/runs/{run_id}/resume", response_model=RunResponse, responses=LIFECYCLE_RESPONSES)
async def resume_run(
    run_id: uuid.UUID, ctx: CanRun, session: SessionDep, commands: RunCommandsDep
) -> RunResponse:
    """paused → running: the work continues from its last checkpoint. pausing → running
    withdraws the pause: the run goes on without stopping."""
    run = await commands.resume(session, org_id=ctx.org_id, run_id=run_id)
    return RunResponse.model_validate(run)


@router.post("/runs/{run_id}/cancel", response_model=RunResponse, responses=LIFECYCLE_RESPONSES)
async def cancel_run(
    run_id: uuid.UUID, ctx: CanRun, session: SessionDep, commands: RunCommandsDep
) -> RunResponse:
    """pending, running, pausing or paused → cancelled; results so far stay. A run an
    instance is executing reads `cancelling` until the provider calls in flight are
    checkpointed (no new one starts), then `cancelled`."""
    run = await commands.cancel(session, org_id=ctx.org_id, run_id=run_id)
    return RunResponse.model_validate(run)


@router.get(
    "/runs/{run_id}/sellers",
    response_model=SellerPage,
    responses={**AUTH_ERRORS, **RUN_NOT_FOUND, **GONE},
)
async def list_sellers(
    run_id: uuid.UUID,
    ctx: CanView,
    session: SessionDep,
    runs: Runs,
    page: Annotated[PageParams, Depends(page_params)],
    sort: Annotated[
        results.SellerSort,
        Query(
            description="Order of the list: the ranking (default), or by seller name, "
            "products, listings, lowest price, feedback score or median estimated margin "
            "(`margin`, once the run has finished). Each seller keeps its rank; ties and "
            "sellers without a value (last) stay in ranking order."
        ),
    ] = "rank",
    order: Annotated[Literal["asc", "desc"], Query(description="Direction of `sort`.")] = "asc",
) -> SellerPage:
    """eBay sellers ranked by how many distinct collected products they list (then by
    listings, then name), with price range, median price and median estimated margin (in
    `currency`), feedback, and whether each is new since the previous completed run of the
    same preset (`compared_with_run_id`). A seller's listings: GET .../listings?seller=."""
    run = await runs.get_run(session, org_id=ctx.org_id, run_id=run_id)
    offset = decode_offset(page.cursor)
    previous = await results.previous_completed_run(session, run)
    sellers, more = await results.rank_sellers(
        session,
        run,
        offset=offset,
        limit=page.limit,
        compared_with=previous,
        sort=sort,
        descending=order == "desc",
    )
    return SellerPage(
        items=[SellerResponse.model_validate(s) for s in sellers],
        next_cursor=encode_offset(offset + len(sellers)) if more else None,
        compared_with_run_id=previous.id if previous else None,
    )


@router.get(
    "/runs/{run_id}/listings",
    response_model=ListingPage,
    responses={**AUTH_ERRORS, **RUN_NOT_FOUND, **GONE},
)
async def list_listings(
    run_id: uuid.UUID,
    ctx: CanView,
    session: SessionDep,
    runs: Runs,
    page: Annotated[PageParams, Depends(page_params)],
    seller: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=100,
            pattern=f"^[^{REFUSED_CLASS}]+$",
            description="Only this seller's listings (its `username`, exactly).",
        ),
    ] = None,
) -> ListingPage:
    """The run's eBay listings (all, or one seller's), each with the Amazon price of its
    product, its shipping and its estimated margin, by ASIN then eBay item id. Every amount
    carries its ISO 4217 currency code; the margins use the run's `fee_percent`."""
    run = await runs.get_run(session, org_id=ctx.org_id, run_id=run_id)
    items, next_cursor = await listings.list_listings(
        session, run, seller=seller, cursor=page.cursor, limit=page.limit
    )
    return ListingPage(
        items=[ListingResponse.model_validate(item) for item in items],
        next_cursor=next_cursor,
        fee_percent=run.fee_percent,
    )


@router.get(
    "/runs/{run_id}/changes",
    response_model=RunChanges,
    responses={
        **AUTH_ERRORS,
        404: {"description": "No such run (or `against` run) in the acting organization."},
        409: {
            "description": "No run to compare with (no earlier completed run of the same "
            "preset), or the runs' categories differ."
        },
        **GONE,
    },
)
async def run_changes(
    run_id: uuid.UUID,
    ctx: CanView,
    session: SessionDep,
    runs: Runs,
    page: Annotated[PageParams, Depends(page_params)],
    against: Annotated[
        uuid.UUID | None,
        Query(
            description="The run to compare with; default: the previous completed run of "
            "the same preset (of the same categories for a run of a category list)."
        ),
    ] = None,
    section: Annotated[
        changes.Section | None,
        Query(description="One section only, for its further pages (`cursor`)."),
    ] = None,
) -> RunChanges:
    """What changed since another run of the same categories: sellers that appeared or
    went, sellers whose rank or product count moved, listings whose price changed. Each
    section is a page (`limit` items); `?section=…&cursor=…` gives the next ones."""
    if page.cursor is not None and section is None:
        raise InvalidError("a cursor belongs to one section: pass section= with it")
    run = await runs.get_run(session, org_id=ctx.org_id, run_id=run_id)
    other = await runs.get_run(session, org_id=ctx.org_id, run_id=against) if against else None
    other = await changes.run_to_compare(session, run, other)
    offset = decode_offset(page.cursor)
    sections = (section,) if section else changes.SECTIONS
    comparison = await changes.compare(
        session, run, other, sections, offset=offset, limit=page.limit
    )
    pages: dict[str, Page[Any]] = {}
    for name, (items, more) in comparison.pages.items():
        model = PriceChangeResponse if name == "price_changes" else SellerChangeResponse
        pages[name] = Page[model](  # type: ignore[valid-type]
            items=[model.model_validate(item) for item in items],
            next_cursor=encode_offset(offset + len(items)) if more else None,
        )
    summary = comparison.summary
    return RunChanges(
        run_id=run.id,
        against_run_id=other.id,
        against_run_name=other.name,
        against_created_at=other.created_at,
        summary=ChangesSummary.model_validate(summary) if summary else None,
        **{name: pages.get(name) for name in changes.SECTIONS},
    )


@router.get(
    "/runs/{run_id}/export.csv",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}}, "description": "RFC 4180 CSV with a header row."},
        **AUTH_ERRORS,
        **RUN_NOT_FOUND,
        **GONE,
    },
)
async def export_run(
    run_id: uuid.UUID,
    ctx: CanView,
    session: SessionDep,
    runs: Runs,
    database: DatabaseDep,
    kind: Annotated[
        Literal["sellers", "listings", "changes"],
        Query(
            description="The ranking, every listing (with the Amazon price of its product, "
            "shipping and estimated margin, each amount next to its currency code), or the "
            "changes since another run (every section of GET /collection/runs/{id}/changes; "
            "a `section` column)."
        ),
    ] = "sellers",
    against: Annotated[
        uuid.UUID | None,
        Query(description="With kind=changes: the run to compare with (default as there)."),
    ] = None,
) -> StreamingResponse:
    """The run's seller ranking, listings or changes as CSV, streamed."""
    if against is not None and kind != "changes":
        raise InvalidError("against= applies to kind=changes only")
    run = await runs.get_run(session, org_id=ctx.org_id, run_id=run_id)
    results.check_kept(run)  # before the 200 starts streaming
    filename = f"run-{run.id}-{kind}.csv"
    if kind == "changes":
        other = await runs.get_run(session, org_id=ctx.org_id, run_id=against) if against else None
        other = await changes.run_to_compare(session, run, other)
        body = changes.export_csv(database, run, other)
    elif kind == "listings":
        body = listings.export_csv(database, run)
    else:
        body = results.export_csv(database, run)
    return StreamingResponse(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
