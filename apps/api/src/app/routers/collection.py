"""Collection endpoints: category presets, runs and their results, and the schedule."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import (
    APIRouter,
    BackgroundTasks,
    Depends,
    HTTPException,
    Query,
    Request,
    Response,
    status,
)
from fastapi.responses import StreamingResponse

from app.auth import OrgContext, require_permission_key
from app.dependencies import SessionDep
from app.models import (
    CronText,
    FireResponse,
    PresetCreate,
    PresetResponse,
    PresetUpdate,
    PreviewResponse,
    RunCreate,
    RunResponse,
    ScheduleResponse,
    ScheduleUpdate,
    SellerPage,
    SellerResponse,
    TimeZoneName,
)
from app.pagination import Page, PageParams, decode_offset, encode_offset, page_params
from app.routers.orgs import AUTH_ERRORS
from app.services import presets as preset_service
from app.services import results
from app.services.collection import (
    ActiveRunExistsError,
    CollectionService,
    PresetMissingError,
    PresetUnusableError,
    RunNotFoundError,
    TransitionNotAllowedError,
)
from app.services.cron import CronError, parse
from app.services.executor import RunExecutor
from app.services.notifications import notify_run_ended
from app.services.scheduler import CollectionScheduler
from app.services.schedules import (
    NoScheduleError,
    ScheduleError,
    ScheduleService,
    TriggeredAlreadyError,
)
from app.tables import (
    DEFAULT_CRON_EXPRESSION,
    CollectionRun,
    CollectionSchedule,
    FireOutcome,
    RunStatus,
    RunTrigger,
    ScheduleFire,
    utcnow,
)

router = APIRouter(prefix="/collection", tags=["collection"])

CanView = Annotated[OrgContext, Depends(require_permission_key("collection.view"))]
CanManagePresets = Annotated[OrgContext, Depends(require_permission_key("presets.manage"))]

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such preset in the acting organization."}
}
NAME_TAKEN: dict[int | str, dict[str, Any]] = {
    409: {"description": "The organization already has a preset with this name."}
}


def _not_found(exc: Exception) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc))


@router.get("/presets", response_model=Page[PresetResponse], responses=AUTH_ERRORS)
async def list_presets(
    ctx: CanView, session: SessionDep, page: Annotated[PageParams, Depends(page_params)]
) -> Page[PresetResponse]:
    """Category presets of the acting organization, newest first."""
    presets, next_cursor = await preset_service.list_presets(session, org_id=ctx.org_id, page=page)
    return Page(items=[PresetResponse.model_validate(p) for p in presets], next_cursor=next_cursor)


@router.post(
    "/presets",
    response_model=PresetResponse,
    status_code=status.HTTP_201_CREATED,
    responses={**AUTH_ERRORS, **NAME_TAKEN},
)
async def create_preset(
    body: PresetCreate, ctx: CanManagePresets, session: SessionDep
) -> PresetResponse:
    """Create a preset: a name unique in the organization and 1-100 numeric category IDs."""
    try:
        preset = await preset_service.create_preset(
            session,
            org_id=ctx.org_id,
            name=body.name,
            category_ids=body.category_ids,
            created_by=ctx.user_id,
        )
    except preset_service.PresetNameTakenError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    await session.commit()
    return PresetResponse.model_validate(preset)


@router.get(
    "/presets/{preset_id}", response_model=PresetResponse, responses={**AUTH_ERRORS, **NOT_FOUND}
)
async def get_preset(preset_id: uuid.UUID, ctx: CanView, session: SessionDep) -> PresetResponse:
    """One preset of the acting organization."""
    try:
        preset = await preset_service.get_preset(session, org_id=ctx.org_id, preset_id=preset_id)
    except preset_service.PresetNotFoundError as exc:
        raise _not_found(exc) from None
    return PresetResponse.model_validate(preset)


@router.patch(
    "/presets/{preset_id}",
    response_model=PresetResponse,
    responses={**AUTH_ERRORS, **NOT_FOUND, **NAME_TAKEN},
)
async def update_preset(
    preset_id: uuid.UUID, body: PresetUpdate, ctx: CanManagePresets, session: SessionDep
) -> PresetResponse:
    """Rename a preset and/or replace its category IDs; fields left out are kept."""
    try:
        preset = await preset_service.update_preset(
            session,
            org_id=ctx.org_id,
            preset_id=preset_id,
            name=body.name,
            category_ids=body.category_ids,
        )
    except preset_service.PresetNotFoundError as exc:
        raise _not_found(exc) from None
    except preset_service.PresetNameTakenError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    await session.commit()
    return PresetResponse.model_validate(preset)


@router.delete(
    "/presets/{preset_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={**AUTH_ERRORS, **NOT_FOUND},
)
async def delete_preset(preset_id: uuid.UUID, ctx: CanManagePresets, session: SessionDep) -> None:
    """Delete a preset of the acting organization."""
    try:
        await preset_service.delete_preset(session, org_id=ctx.org_id, preset_id=preset_id)
    except preset_service.PresetNotFoundError as exc:
        raise _not_found(exc) from None
    await session.commit()


# --- runs --------------------------------------------------------------------------------

CanRun = Annotated[OrgContext, Depends(require_permission_key("collection.run"))]
RUN_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such run in the acting organization."}
}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "Not allowed from the run's current status (the message names it)."}
}


def get_collection_service(request: Request) -> CollectionService:
    """The app's CollectionService."""
    service: CollectionService = request.app.state.collection
    return service


def get_executor(request: Request) -> RunExecutor:
    """This instance's RunExecutor."""
    executor: RunExecutor = request.app.state.executor
    return executor


Service = Annotated[CollectionService, Depends(get_collection_service)]
Executor = Annotated[RunExecutor, Depends(get_executor)]


async def _get_run(
    service: CollectionService, session: SessionDep, ctx: OrgContext, run_id: uuid.UUID
) -> CollectionRun:
    try:
        return await service.get_run(session, org_id=ctx.org_id, run_id=run_id)
    except RunNotFoundError as exc:
        raise _not_found(exc) from None


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
    body: RunCreate, ctx: CanRun, session: SessionDep, service: Service
) -> RunResponse:
    """Create a run (`pending`) of a preset or of explicit category IDs; start it with
    `POST /collection/runs/{id}/start`. One active run per organization."""
    try:
        run = await service.create_run(
            session,
            org_id=ctx.org_id,
            created_by=ctx.user_id,
            preset_id=body.preset_id,
            category_ids=body.category_ids,
            name=body.name,
            products_per_category=body.products_per_category,
            listings_per_product=body.listings_per_product,
        )
    except PresetMissingError as exc:
        raise _not_found(exc) from None
    except (ActiveRunExistsError, PresetUnusableError) as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    await session.commit()
    return RunResponse.model_validate(run)


@router.get("/runs", response_model=Page[RunResponse], responses=AUTH_ERRORS)
async def list_runs(
    ctx: CanView,
    session: SessionDep,
    service: Service,
    page: Annotated[PageParams, Depends(page_params)],
    status_filter: Annotated[
        list[RunStatus] | None,
        Query(alias="status", description="Only runs in these statuses (repeatable)."),
    ] = None,
) -> Page[RunResponse]:
    """Runs of the acting organization, newest first."""
    runs, next_cursor = await service.list_runs(
        session, org_id=ctx.org_id, page=page, statuses=status_filter or ()
    )
    return Page(items=[RunResponse.model_validate(r) for r in runs], next_cursor=next_cursor)


@router.get(
    "/runs/{run_id}", response_model=RunResponse, responses={**AUTH_ERRORS, **RUN_NOT_FOUND}
)
async def get_run(
    run_id: uuid.UUID, ctx: CanView, session: SessionDep, service: Service
) -> RunResponse:
    """One run with its phase and progress counters."""
    return RunResponse.model_validate(await _get_run(service, session, ctx, run_id))


LIFECYCLE_RESPONSES = {**AUTH_ERRORS, **RUN_NOT_FOUND, **CONFLICT}


async def _transition(
    action: str,
    run_id: uuid.UUID,
    ctx: OrgContext,
    session: SessionDep,
    service: CollectionService,
) -> CollectionRun:
    method = {
        "start": service.start_run,
        "pause": service.pause_run,
        "resume": service.resume_run,
        "cancel": service.cancel_run,
    }[action]
    try:
        run = await method(session, org_id=ctx.org_id, run_id=run_id)
    except RunNotFoundError as exc:
        raise _not_found(exc) from None
    except TransitionNotAllowedError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    await session.commit()
    return run


@router.post("/runs/{run_id}/start", response_model=RunResponse, responses=LIFECYCLE_RESPONSES)
async def start_run(
    run_id: uuid.UUID, ctx: CanRun, session: SessionDep, service: Service, executor: Executor
) -> RunResponse:
    """pending → running: the run executes in the background."""
    run = await _transition("start", run_id, ctx, session, service)
    await executor.submit(run.id)
    return RunResponse.model_validate(run)


@router.post("/runs/{run_id}/pause", response_model=RunResponse, responses=LIFECYCLE_RESPONSES)
async def pause_run(
    run_id: uuid.UUID, ctx: CanRun, session: SessionDep, service: Service, executor: Executor
) -> RunResponse:
    """running → pausing → paused: no new provider call starts; the calls in flight finish
    and are checkpointed (they are paid for) while the run reads `pausing`; then it reads
    `paused` and nothing about it changes until it is resumed. A run that no instance is
    executing is `paused` at once."""
    run = await _transition("pause", run_id, ctx, session, service)
    executor.interrupt(run.id)
    return RunResponse.model_validate(run)


@router.post("/runs/{run_id}/resume", response_model=RunResponse, responses=LIFECYCLE_RESPONSES)
async def resume_run(
    run_id: uuid.UUID, ctx: CanRun, session: SessionDep, service: Service, executor: Executor
) -> RunResponse:
    """paused → running: the work continues from its last checkpoint. pausing → running
    withdraws the pause: the run goes on without stopping."""
    run = await _transition("resume", run_id, ctx, session, service)
    await executor.submit(run.id)
    return RunResponse.model_validate(run)


@router.post("/runs/{run_id}/cancel", response_model=RunResponse, responses=LIFECYCLE_RESPONSES)
async def cancel_run(
    run_id: uuid.UUID,
    ctx: CanRun,
    session: SessionDep,
    service: Service,
    executor: Executor,
    request: Request,
    background: BackgroundTasks,
) -> RunResponse:
    """pending, running, pausing or paused → cancelled; results so far stay. A run an
    instance is executing reads `cancelling` until the provider calls in flight are
    checkpointed (no new one starts), then `cancelled`."""
    run = await _transition("cancel", run_id, ctx, session, service)
    executor.interrupt(run.id)
    # a cancelling run is announced by the instance that settles it
    if run.trigger is RunTrigger.SCHEDULE and run.status is RunStatus.CANCELLED:
        background.add_task(
            notify_run_ended, request.app.state.database, request.app.state.mailer, run.id
        )
    return RunResponse.model_validate(run)


GONE: dict[int | str, dict[str, Any]] = {
    410: {"description": "The run's results were deleted by the retention policy."}
}


@router.get(
    "/runs/{run_id}/sellers",
    response_model=SellerPage,
    responses={**AUTH_ERRORS, **RUN_NOT_FOUND, **GONE},
)
async def list_sellers(
    run_id: uuid.UUID,
    ctx: CanView,
    session: SessionDep,
    service: Service,
    page: Annotated[PageParams, Depends(page_params)],
    sort: Annotated[
        results.SellerSort,
        Query(
            description="Order of the list: the ranking (default), or by seller name, "
            "products, listings, lowest price or feedback score. Each seller keeps its rank; "
            "ties and sellers without a value (last) stay in ranking order."
        ),
    ] = "rank",
    order: Annotated[Literal["asc", "desc"], Query(description="Direction of `sort`.")] = "asc",
) -> SellerPage:
    """eBay sellers ranked by how many distinct collected products they list (then by
    listings, then name), with price range, feedback, and whether each is new since the
    previous completed run of the same preset (`compared_with_run_id`)."""
    run = await _get_run(service, session, ctx, run_id)
    offset = decode_offset(page.cursor)
    previous = await results.previous_completed_run(session, run)
    try:
        sellers, more = await results.rank_sellers(
            session,
            run,
            offset=offset,
            limit=page.limit,
            compared_with=previous,
            sort=sort,
            descending=order == "desc",
        )
    except results.ResultsPurgedError as exc:
        raise HTTPException(status.HTTP_410_GONE, detail=str(exc)) from None
    return SellerPage(
        items=[SellerResponse.model_validate(s) for s in sellers],
        next_cursor=encode_offset(offset + len(sellers)) if more else None,
        compared_with_run_id=previous.id if previous else None,
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
    service: Service,
    request: Request,
    kind: Annotated[
        Literal["sellers", "listings"], Query(description="The ranking, or every listing.")
    ] = "sellers",
) -> StreamingResponse:
    """The run's seller ranking or listings as CSV, streamed."""
    run = await _get_run(service, session, ctx, run_id)
    if run.results_purged_at is not None:
        raise HTTPException(
            status.HTTP_410_GONE, detail=f"results of run {run.id} were deleted by retention"
        )
    filename = f"run-{run.id}-{kind}.csv"
    return StreamingResponse(
        results.export_csv(request.app.state.database, run, kind),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# --- schedule ------------------------------------------------------------------------------

CanAutomate = Annotated[OrgContext, Depends(require_permission_key("admin.automation"))]


def get_schedule_service(request: Request) -> ScheduleService:
    """The app's ScheduleService."""
    service: ScheduleService = request.app.state.schedules
    return service


def get_scheduler(request: Request) -> CollectionScheduler:
    """This instance's schedule engine (running or not)."""
    scheduler: CollectionScheduler = request.app.state.scheduler
    return scheduler


Schedules = Annotated[ScheduleService, Depends(get_schedule_service)]
Scheduler = Annotated[CollectionScheduler, Depends(get_scheduler)]
BAD_SCHEDULE: dict[int | str, dict[str, Any]] = {
    400: {"description": "Invalid cron expression, time zone or preset (the message says which)."}
}


def _schedule_response(
    schedule: CollectionSchedule | None, preset_name: str | None
) -> ScheduleResponse:
    if schedule is None:
        return ScheduleResponse(
            id=None,
            preset_id=None,
            preset_name=None,
            cron_expression=DEFAULT_CRON_EXPRESSION,
            timezone="UTC",
            description=parse(DEFAULT_CRON_EXPRESSION, "UTC").describe(),
            enabled=False,
            notify_email=False,
            last_run_at=None,
            last_outcome=None,
            next_run_at=None,
        )
    try:
        description = parse(schedule.cron_expression, schedule.timezone).describe()
    except CronError as exc:
        description = f"invalid: {exc}"
    return ScheduleResponse(
        id=schedule.id,
        preset_id=schedule.preset_id,
        preset_name=preset_name,
        cron_expression=schedule.cron_expression,
        timezone=schedule.timezone,
        description=description,
        enabled=schedule.enabled,
        notify_email=schedule.notify_email,
        last_run_at=schedule.last_run_at,
        last_outcome=schedule.last_outcome,
        next_run_at=schedule.next_run_at,
    )


@router.get("/schedule", response_model=ScheduleResponse, responses=AUTH_ERRORS)
async def get_schedule(
    ctx: CanAutomate, session: SessionDep, schedules: Schedules
) -> ScheduleResponse:
    """The organization's schedule, or the defaults (`0 0 1 * *`, UTC, disabled) when none
    was saved. Admins only."""
    schedule, preset_name = await schedules.get(session, org_id=ctx.org_id)
    return _schedule_response(schedule, preset_name)


@router.patch(
    "/schedule", response_model=ScheduleResponse, responses={**AUTH_ERRORS, **BAD_SCHEDULE}
)
async def update_schedule(
    body: ScheduleUpdate,
    ctx: CanAutomate,
    session: SessionDep,
    schedules: Schedules,
    scheduler: Scheduler,
) -> ScheduleResponse:
    """Create or change the schedule. Takes effect at once here and within
    SCHEDULER_POLL_SECONDS on every other replica. Admins only."""
    try:
        schedule, preset_name = await schedules.update(
            session, org_id=ctx.org_id, changes=body.model_dump(exclude_unset=True)
        )
    except ScheduleError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from None
    await session.commit()
    scheduler.wake()
    return _schedule_response(schedule, preset_name)


@router.get("/schedule/history", response_model=Page[FireResponse], responses=AUTH_ERRORS)
async def schedule_history(
    ctx: CanAutomate,
    session: SessionDep,
    schedules: Schedules,
    page: Annotated[PageParams, Depends(page_params)],
) -> Page[FireResponse]:
    """Recent fires, newest first: due time, outcome and the run started (or skipped for)."""
    fires, next_cursor = await schedules.history(session, org_id=ctx.org_id, page=page)
    return Page(items=[FireResponse.model_validate(f) for f in fires], next_cursor=next_cursor)


@router.post(
    "/schedule/trigger",
    response_model=FireResponse,
    status_code=status.HTTP_201_CREATED,
    responses={
        **AUTH_ERRORS,
        400: {"description": "The schedule has no preset."},
        404: {"description": "The organization has no schedule yet."},
        409: {
            "description": "Skipped (a run is active), or failed (the preset cannot be run); "
            "logged in the history either way."
        },
    },
)
async def trigger_schedule(
    ctx: CanAutomate, session: SessionDep, schedules: Schedules, scheduler: Scheduler
) -> FireResponse:
    """Run the scheduled preset now, under the same skip rule as a scheduled fire; the
    attempt is logged in the history either way."""
    try:
        result = await schedules.trigger(session, org_id=ctx.org_id)
    except NoScheduleError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    except TriggeredAlreadyError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    await session.commit()
    scheduler.handle_fired([result])
    if result.outcome is FireOutcome.SKIPPED:
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail=f"skipped: {result.detail}; logged in the history"
        )
    if result.outcome is FireOutcome.NO_PRESET:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=result.detail or "no preset")
    if result.outcome is FireOutcome.FAILED:
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail=f"failed: {result.detail}; logged in the history"
        )
    fire = await session.get_one(ScheduleFire, result.fire_id)
    return FireResponse.model_validate(fire)


@router.get(
    "/schedule/preview",
    response_model=PreviewResponse,
    responses={**AUTH_ERRORS, **BAD_SCHEDULE},
)
async def preview_schedule(
    ctx: CanView,
    cron_expression: Annotated[CronText, Query(examples=["0 9 * * 1-5"])],
    timezone: Annotated[TimeZoneName, Query()] = "UTC",
    after: Annotated[
        datetime | None,
        Query(
            description="Start (exclusive); without an offset it is read in `timezone`. "
            "Default: now."
        ),
    ] = None,
    count: Annotated[int, Query(ge=1, le=100)] = 5,
) -> PreviewResponse:
    """The next fire times of a cron expression in a time zone (any member may ask)."""
    try:
        cron = parse(cron_expression, timezone)
    except CronError as exc:
        field_name = "timezone" if exc.field == "timezone" else "cron_expression"
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=f"{field_name}: {exc}") from None
    start = after or utcnow()
    if start.tzinfo is None:
        start = start.replace(tzinfo=ZoneInfo(cron.timezone))
    try:
        fire_times = cron.fire_times(start, count)  # fewer near the end of the calendar
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from None
    return PreviewResponse(
        cron_expression=cron.expression,
        timezone=cron.timezone,
        description=cron.describe(),
        fire_times=fire_times,
    )
