"""Run pages: a new run from a preset, one run with live progress and timing, lifecycle
buttons, "Run again", its ranked sellers (sortable, paginated), its changes since another
run (`web/run_changes.py`) and CSV downloads. The list is in `web/runs_list.py`.

Every action goes through the same commands as the JSON API (`app.runs.commands`), so the
lifecycle rules, the one-active-run rule and the tenant scoping are the API's own.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, status
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
from app.runs import changes, listings, results
from app.runs.lifecycle import ALLOWED_FROM, PresetMissingError, RunLifecycle
from app.tables import ACTIVE_RUN_STATUSES, CollectionRun, RunStatus
from app.web import run_changes, run_estimate
from app.web.errors import FORM, WebError, field_errors, web_error
from app.web.rendering import flash, render
from app.web.session import CanRun, CanView, WebContext
from app.web.watchlist import run_digest, watched_sellers

router = APIRouter(include_in_schema=False)

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


def path_id(value: str, what: str) -> uuid.UUID:
    """The id in a page's path; a 404 page when it is not one."""
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


def can_run_again(row: CollectionRun) -> bool:
    """Whether "Run again" applies: the run has finished (completed, failed or cancelled)."""
    return row.status in run_changes.FINISHED


def is_active(run: RunResponse) -> bool:
    """Whether the run may still change (queued, or pending to cancelling): its page and
    the list refresh while it does."""
    return run.status in ACTIVE_RUN_STATUSES or run.status is RunStatus.QUEUED


def one_at_a_time(context: WebContext, active: CollectionRun, then: str) -> str:
    """Why a run was not created while another is active, and what to do."""
    return (
        f"Not created: the run {active.name} is still {active.status.value}, and "
        f"{context.org_name} runs one collection at a time. Wait for it to finish, "
        f"or cancel it, then {then}."
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
            message = one_at_a_time(context, active, "create this one")
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


async def run_row(
    context: WebContext, session: AsyncSession, runs: RunLifecycle, run_id: uuid.UUID
) -> CollectionRun:
    """The run of the acting organization; a 404 page that says why when it is not."""
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
    natural_descending = chosen in ("products", "listings", "feedback", "margin")
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
    compare: dict[str, str] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    row = await run_row(context, session, runs, run_id)
    run = RunResponse.model_validate(row)
    sellers = await _sellers(session, row, sort=sort, order=order, page=page)
    changed = await run_changes.changes_section(session, runs, row, **(compare or {}))
    if status_code == status.HTTP_200_OK:
        status_code = status.HTTP_404_NOT_FOUND if sellers["past_end"] else changed.status_code
    return render(
        request,
        "runs/detail.html",
        status_code=status_code,
        nav="runs",
        run=run,
        **await run_estimate.timing(request, session, row, now=runs.clock()),
        actions=allowed_actions(run, context),
        run_again=context.can("collection.run") and can_run_again(row),
        live=is_active(run),
        error=error,
        digest=await run_digest(session, context, row),
        changes=changed,
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
    against: str = "",
    section: str = "",
    cursor: str = "",
) -> Response:
    """One run: live progress and timing, lifecycle buttons, ranked sellers, its changes
    since another run (`against`, default the previous completed one; `section` from
    `cursor` on) and downloads."""
    compare = {"against": against, "section": section, "cursor": cursor}
    run_uuid = path_id(run_id, "run")
    return await _run_page(
        request,
        context,
        session,
        runs,
        run_uuid,
        sort=sort,
        order=order,
        page=page,
        compare=compare,
    )


@router.get("/runs/{run_id}/changes")
async def run_changes_page(
    request: Request,
    run_id: str,
    context: CanView,
    session: SessionDep,
    runs: Runs,
    against: str = "",
    section: str = "",
    cursor: str = "",
) -> Response:
    """A further page of one section of the run's changes, which app.js appends."""
    row = await run_row(context, session, runs, path_id(run_id, "run"))
    found, problem, status_code = await run_changes.section_page(
        session, runs, row, against=against, section=section, cursor=cursor
    )
    if found is None:
        raise WebError(status_code, problem or "There are no such changes.")
    return render(request, "runs/_change_page.html", run=row, page=found, against=against)


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
    row = await run_row(context, session, runs, path_id(run_id, "run"))
    run = RunResponse.model_validate(row)
    sellers = await _sellers(session, row, sort=sort, order=order, page=page)
    return render(request, "runs/_sellers.html", run=run, live=is_active(run), **sellers)


@router.post("/runs/{run_id}/again")
async def run_again(
    request: Request,
    run_id: str,
    context: CanRun,
    session: SessionDep,
    runs: Runs,
    commands: RunCommandsDep,
) -> Response:
    """A new run of a finished run's preset (or, if the preset was deleted, of its
    categories) and size, started at once (POST /collection/runs, then /start)."""
    run_uuid = path_id(run_id, "run")
    row = await run_row(context, session, runs, run_uuid)
    # (read now: a rollback below expires the row)
    name, preset_id, category_ids = row.name, row.preset_id, list(row.category_ids)
    sizes = row.products_per_category, row.listings_per_product

    async def refused(message: str, status_code: int) -> Response:
        await session.rollback()
        return await _run_page(
            request, context, session, runs, run_uuid, error=message, status_code=status_code
        )

    if not can_run_again(row):
        message = f"This run is {row.status.value}: run it again once it has finished."
        return await refused(message, status.HTTP_409_CONFLICT)

    async def create(**source: Any) -> CollectionRun:
        return await commands.create(
            session,
            org_id=context.org.org_id,
            created_by=context.org.user_id,
            products_per_category=sizes[0],
            listings_per_product=sizes[1],
            **source,
        )

    note = ""
    try:
        try:
            if preset_id is None:
                new = await create(category_ids=category_ids)
            else:
                new = await create(preset_id=preset_id)
        except PresetMissingError:
            await session.rollback()
            note = " Its preset was deleted, so this run collects the same categories."
            new = await create(category_ids=category_ids)
    except ConflictError as exc:
        await session.rollback()
        active = await runs.active_run(session, org_id=context.org.org_id)
        message = one_at_a_time(context, active, "run this one again") if active else exc.message
        return await refused(message, status.HTTP_409_CONFLICT)
    try:
        await commands.start(session, org_id=context.org.org_id, run_id=new.id)
        message = f"Running {name} again, with the same size.{note}"
    except AppError as exc:
        message = f"Run created but not started: {exc.message}. Use Start below.{note}"
    response = RedirectResponse(f"/runs/{new.id}", status_code=status.HTTP_303_SEE_OTHER)
    return flash(response, request, message)


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
    run_uuid = path_id(run_id, "run")
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
    against: str = "",
) -> StreamingResponse:
    """The run's sellers, listings or changes since another run (`against`, default the
    previous completed one) as CSV: the API's export, with the session cookie."""
    row = await run_row(context, session, runs, path_id(run_id, "run"))
    try:
        results.check_kept(row)
    except results.ResultsPurgedError:
        raise WebError(
            status.HTTP_410_GONE,
            "The results of this run were deleted by the retention policy, so there is "
            "nothing to download. Start a new run to collect fresh data.",
        ) from None
    chosen = kind if kind in ("listings", "changes") else "sellers"
    if chosen == "changes":
        other = await run_changes.compared_run(session, runs, row, against)
        body = changes.export_csv(database, row, other)
    elif chosen == "listings":
        body = listings.export_csv(database, row)
    else:
        body = results.export_csv(database, row)
    return StreamingResponse(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="run-{row.id}-{chosen}.csv"'},
    )
