"""Run pages: the list, a new run from a preset, one run with live progress, lifecycle
buttons, its ranked sellers (sortable, paginated) and CSV downloads.

Every action goes through the same commands as the JSON API (`app.runs.commands`), so the
lifecycle rules, the one-active-run rule and the tenant scoping are the API's own.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, status
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app import presets as preset_service
from app.api.deps import DatabaseDep, RunCommandsDep, Runs, SessionDep
from app.api.errors import status_of
from app.core.pagination import PageParams
from app.errors import AppError, ConflictError, NotFoundError
from app.instance import instance_of
from app.models import RunCreate, RunResponse
from app.runs import results
from app.runs.lifecycle import ALLOWED_FROM, RunLifecycle
from app.tables import ACTIVE_RUN_STATUSES, CollectionRun, RunStatus
from app.web.errors import FORM, WebError, field_errors, web_error
from app.web.rendering import flash, render
from app.web.session import CanRun, CanView, WebContext
from app.web.watchlist import run_digest, watched_sellers

router = APIRouter(include_in_schema=False)

RUNS_PER_PAGE = 25
SELLERS_PER_PAGE = 25
ACTIONS = ("start", "pause", "resume", "cancel")
# What an action did, by the status it left the run in.
ACTION_DONE = {
    ("start", RunStatus.RUNNING): "Run started.",
    ("pause", RunStatus.PAUSING): "Pausing: no new searches start; paused once those under "
    "way are saved.",
    ("pause", RunStatus.PAUSED): "Run paused.",
    ("resume", RunStatus.RUNNING): "Run resumed from its last checkpoint.",
    ("cancel", RunStatus.CANCELLING): "Cancelling: no new searches start; those under way "
    "are saved first.",
    ("cancel", RunStatus.CANCELLED): "Run cancelled. Results collected so far are kept.",
}


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise WebError(
            status.HTTP_404_NOT_FOUND, f"There is no such {what} in this organization."
        ) from None


def allowed_actions(run: RunResponse, context: WebContext) -> list[str]:
    """The lifecycle buttons this user may press for this run now."""
    if not context.can("collection.run"):
        return []
    return [action for action in ACTIONS if run.status in ALLOWED_FROM[action]]


def is_active(run: RunResponse) -> bool:
    """Whether the run may still change (queued, or pending to cancelling): its page and
    the list refresh while it does."""
    return run.status in ACTIVE_RUN_STATUSES or run.status is RunStatus.QUEUED


# --- the list ----------------------------------------------------------------------------------


@router.get("/runs")
async def runs_page(
    request: Request,
    context: CanView,
    session: SessionDep,
    runs: Runs,
    status_filter: Annotated[str, Query(alias="status")] = "",
    cursor: str | None = None,
    fragment: str = "",
) -> Response:
    """The organization's runs, newest first, refreshing while any of them is active."""
    statuses = [RunStatus(status_filter)] if status_filter in set(RunStatus) else []
    rows, next_cursor = await runs.list_runs(
        session,
        org_id=context.org.org_id,
        page=PageParams(cursor=cursor, limit=RUNS_PER_PAGE),
        statuses=statuses,
    )
    items = [RunResponse.model_validate(row) for row in rows]
    has_presets = bool(items) or bool(
        (
            await preset_service.list_presets(
                session, org_id=context.org.org_id, page=PageParams(limit=1)
            )
        )[0]
    )
    return render(
        request,
        "runs/_table.html" if fragment else "runs/list.html",
        nav="runs",
        runs=items,
        next_cursor=next_cursor,
        cursor=cursor,
        status_filter=status_filter if statuses else "",
        statuses=list(RunStatus),
        has_presets=has_presets,
        live=any(is_active(run) for run in items),
    )


# --- a new run -----------------------------------------------------------------------------------


async def _new_run_page(
    request: Request,
    context: WebContext,
    session: AsyncSession,
    runs: RunLifecycle,
    *,
    values: dict[str, str],
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    presets, _ = await preset_service.list_presets(
        session, org_id=context.org.org_id, page=PageParams(limit=200)
    )
    active = await runs.active_run(session, org_id=context.org.org_id)
    return render(
        request,
        "runs/new.html",
        status_code=status_code,
        nav="runs",
        presets=presets,
        active=active,
        values=values,
        errors=errors or {},
        defaults=instance_of(request).settings,
    )


@router.get("/runs/new")
async def new_run_page(
    request: Request,
    context: CanRun,
    session: SessionDep,
    runs: Runs,
    preset_id: str = "",
) -> Response:
    """The form that starts a run of a preset."""
    values = {"preset_id": preset_id, "start": "on"}
    return await _new_run_page(request, context, session, runs, values=values)


@router.post("/runs")
async def create_run(
    request: Request,
    context: CanRun,
    session: SessionDep,
    runs: Runs,
    commands: RunCommandsDep,
    preset_id: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    products_per_category: Annotated[str, Form()] = "",
    listings_per_product: Annotated[str, Form()] = "",
    start: Annotated[str, Form()] = "",
) -> Response:
    """Create a run of a preset (POST /collection/runs), and start it unless asked not to."""
    values = {
        "preset_id": preset_id,
        "name": name,
        "products_per_category": products_per_category,
        "listings_per_product": listings_per_product,
        "start": start,
    }

    async def again(errors: dict[str, str], status_code: int) -> Response:
        return await _new_run_page(
            request,
            context,
            session,
            runs,
            values=values,
            errors=errors,
            status_code=status_code,
        )

    if not preset_id:
        return await again({"preset_id": "Choose a preset to collect."}, 400)
    fields = {k: v.strip() for k, v in values.items() if k != "start" and v.strip()}
    try:
        body = RunCreate.model_validate(fields)
    except ValidationError as exc:
        return await again(field_errors(exc), 400)
    try:
        run = await commands.create(
            session,
            org_id=context.org.org_id,
            created_by=context.org.user_id,
            preset_id=body.preset_id,
            name=body.name,
            products_per_category=body.products_per_category,
            listings_per_product=body.listings_per_product,
        )
    except AppError as exc:
        await session.rollback()
        if isinstance(exc, NotFoundError):
            message = "This preset no longer exists (it was deleted): choose another."
            return await again({"preset_id": message}, status.HTTP_404_NOT_FOUND)
        active = await runs.active_run(session, org_id=context.org.org_id)
        if isinstance(exc, ConflictError) and active is not None:
            message = (
                f"Not created: the run {active.name} is still {active.status.value}, and "
                f"{context.org_name} runs one collection at a time. Wait for it to finish, "
                "or cancel it, then create this one."
            )
            return await again({FORM: message}, status.HTTP_409_CONFLICT)
        return await again({FORM: exc.message}, status_of(exc))
    message = "Run created: start it when you are ready."
    if start:
        try:
            run = await commands.start(session, org_id=context.org.org_id, run_id=run.id)
            message = "Run started: progress updates below."
        except AppError as exc:
            message = f"Run created but not started: {exc.message}. Use Start below."
    response = RedirectResponse(f"/runs/{run.id}", status_code=status.HTTP_303_SEE_OTHER)
    return flash(response, request, message)


# --- one run ---------------------------------------------------------------------------------


def _missing_run(context: WebContext) -> str:
    return (
        f"This run is not in {context.org_name}: it was deleted, or it belongs to another "
        "of your organizations (switch organization above), or the link is mistyped."
    )


async def _run_row(
    context: WebContext, session: AsyncSession, runs: RunLifecycle, run_id: uuid.UUID
) -> CollectionRun:
    try:
        return await runs.get_run(session, org_id=context.org.org_id, run_id=run_id)
    except NotFoundError as exc:
        raise WebError(status.HTTP_404_NOT_FOUND, _missing_run(context)) from exc


async def _sellers(
    session: AsyncSession, row: CollectionRun, *, sort: str, order: str, page: str
) -> dict[str, Any]:
    """What the sellers section shows: one page of the ranking, in the order asked for."""
    chosen: results.SellerSort = next((key for key in results.SELLER_SORTS if key == sort), "rank")
    # The natural direction of each column: best first (rank 1, most products, ...).
    natural_descending = chosen in ("products", "listings", "feedback")
    descending = natural_descending if order not in ("asc", "desc") else order == "desc"
    page_number = requested_page(page)
    sellers: list[results.RankedSeller] = []
    total = 0
    compared_with = None
    if row.results_purged_at is None:
        total = await results.count_sellers(session, row)
    pages = max(1, -(-total // SELLERS_PER_PAGE))
    if row.results_purged_at is None and page_number <= pages:
        compared_with = await results.previous_completed_run(session, row)
        sellers, _ = await results.rank_sellers(
            session,
            row,
            compared_with=compared_with,
            sort=chosen,
            descending=descending,
            offset=(page_number - 1) * SELLERS_PER_PAGE,
            limit=SELLERS_PER_PAGE,
        )
    return {
        "sellers": sellers,
        "total_sellers": total,
        "sort": chosen,
        "order": order if order in ("asc", "desc") else "",
        "descending": descending,
        "natural_descending": natural_descending,
        "page": page_number,
        "pages": pages,
        "past_end": page_number > pages,
        "per_page": SELLERS_PER_PAGE,
        "compared_with": compared_with,
        "watched": await watched_sellers(session, row, [seller.username for seller in sellers]),
    }


async def _run_page(
    request: Request,
    context: WebContext,
    session: AsyncSession,
    runs: RunLifecycle,
    run_id: uuid.UUID,
    *,
    sort: str = "rank",
    order: str = "",
    page: str = "1",
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    row = await _run_row(context, session, runs, run_id)
    run = RunResponse.model_validate(row)
    sellers = await _sellers(session, row, sort=sort, order=order, page=page)
    return render(
        request,
        "runs/detail.html",
        status_code=status.HTTP_404_NOT_FOUND if sellers["past_end"] else status_code,
        nav="runs",
        run=run,
        actions=allowed_actions(run, context),
        live=is_active(run),
        error=error,
        digest=await run_digest(session, context, row),
        **sellers,
    )


MAX_PAGE = 10**9
"""Page numbers asked for beyond this are read as this (past the end of any run)."""


def requested_page(text: str) -> int:
    """The page asked for in `?page=`: 1 for anything but ASCII digits (`²` is a digit to
    Python) or for 0, at most MAX_PAGE however many digits, so it never overflows a query."""
    if not (text.isascii() and text.isdigit()):
        return 1
    digits = text.lstrip("0")
    if not digits:
        return 1
    if len(digits) > len(str(MAX_PAGE)):
        return MAX_PAGE
    return min(int(digits), MAX_PAGE)


@router.get("/runs/{run_id}")
async def run_page(
    request: Request,
    run_id: str,
    context: CanView,
    session: SessionDep,
    runs: Runs,
    sort: str = "rank",
    order: str = "",
    page: str = "1",
) -> Response:
    """One run: live progress, lifecycle buttons, ranked sellers and downloads."""
    return await _run_page(
        request, context, session, runs, _uuid(run_id, "run"), sort=sort, order=order, page=page
    )


@router.get("/runs/{run_id}/sellers")
async def run_sellers(
    request: Request,
    run_id: str,
    context: CanView,
    session: SessionDep,
    runs: Runs,
    sort: str = "rank",
    order: str = "",
    page: str = "1",
) -> Response:
    """The sellers section of a run's page, polled while the run is active."""
    row = await _run_row(context, session, runs, _uuid(run_id, "run"))
    run = RunResponse.model_validate(row)
    sellers = await _sellers(session, row, sort=sort, order=order, page=page)
    return render(request, "runs/_sellers.html", run=run, live=is_active(run), **sellers)


@router.get("/runs/{run_id}/live")
async def run_live(
    request: Request, run_id: str, context: CanView, session: SessionDep, runs: Runs
) -> Response:
    """The live part of a run's page (status, progress, buttons), polled while it runs."""
    run = RunResponse.model_validate(await _run_row(context, session, runs, _uuid(run_id, "run")))
    return render(
        request,
        "runs/_live.html",
        run=run,
        actions=allowed_actions(run, context),
        live=is_active(run),
    )


@router.post("/runs/{run_id}/{action}")
async def run_action(
    request: Request,
    run_id: str,
    action: str,
    context: CanRun,
    session: SessionDep,
    runs: Runs,
    commands: RunCommandsDep,
) -> Response:
    """Start, pause, resume or cancel a run (the API's transitions; 409 when not allowed)."""
    if action not in ACTIONS:
        raise WebError(status.HTTP_404_NOT_FOUND, f"Runs cannot be asked to {action!r}.")
    run_uuid = _uuid(run_id, "run")
    command = {
        "start": commands.start,
        "pause": commands.pause,
        "resume": commands.resume,
        "cancel": commands.cancel,
    }[action]
    try:
        run = await command(session, org_id=context.org.org_id, run_id=run_uuid)
    except ConflictError as exc:
        await session.rollback()
        return await _run_page(
            request,
            context,
            session,
            runs,
            run_uuid,
            error=f"Could not {action} the run: {exc.message}.",
            status_code=status.HTTP_409_CONFLICT,
        )
    except AppError as exc:
        raise web_error(exc, missing=_missing_run(context)) from None
    response = RedirectResponse(f"/runs/{run_uuid}", status_code=status.HTTP_303_SEE_OTHER)
    done = ACTION_DONE.get((action, run.status), f"The run is {run.status.value}.")
    return flash(response, request, done)


@router.get("/runs/{run_id}/export.csv")
async def export_run(
    request: Request,
    run_id: str,
    context: CanView,
    session: SessionDep,
    runs: Runs,
    database: DatabaseDep,
    kind: str = "sellers",
) -> StreamingResponse:
    """The run's sellers or listings as CSV (the API's export, with the session cookie)."""
    row = await _run_row(context, session, runs, _uuid(run_id, "run"))
    try:
        results.check_kept(row)
    except results.ResultsPurgedError:
        raise WebError(
            status.HTTP_410_GONE,
            "The results of this run were deleted by the retention policy, so there is "
            "nothing to download. Start a new run to collect fresh data.",
        ) from None
    chosen = "listings" if kind == "listings" else "sellers"
    return StreamingResponse(
        results.export_csv(database, row, chosen),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="run-{row.id}-{chosen}.csv"'},
    )
