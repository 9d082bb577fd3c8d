"""Collection endpoints: category presets, runs and their results."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from app.auth import OrgContext, require_permission_key
from app.dependencies import SessionDep
from app.models import (
    PresetCreate,
    PresetResponse,
    PresetUpdate,
    RunCreate,
    RunResponse,
    SellerResponse,
)
from app.pagination import Page, PageParams, decode_offset, encode_offset, page_params
from app.routers.orgs import AUTH_ERRORS
from app.services import presets as preset_service
from app.services import results
from app.services.collection import (
    ActiveRunExistsError,
    CollectionService,
    PresetMissingError,
    RunNotFoundError,
    TransitionNotAllowedError,
)
from app.services.executor import RunExecutor
from app.tables import CollectionRun, RunStatus

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
        409: {"description": "The organization already has an active run (named)."},
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
    except ActiveRunExistsError as exc:
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
    run_id: uuid.UUID, ctx: CanRun, session: SessionDep, service: Service
) -> RunResponse:
    """running → paused: the work stops at its next checkpoint."""
    return RunResponse.model_validate(await _transition("pause", run_id, ctx, session, service))


@router.post("/runs/{run_id}/resume", response_model=RunResponse, responses=LIFECYCLE_RESPONSES)
async def resume_run(
    run_id: uuid.UUID, ctx: CanRun, session: SessionDep, service: Service, executor: Executor
) -> RunResponse:
    """paused → running: the work continues from its last checkpoint."""
    run = await _transition("resume", run_id, ctx, session, service)
    await executor.submit(run.id)
    return RunResponse.model_validate(run)


@router.post("/runs/{run_id}/cancel", response_model=RunResponse, responses=LIFECYCLE_RESPONSES)
async def cancel_run(
    run_id: uuid.UUID, ctx: CanRun, session: SessionDep, service: Service, executor: Executor
) -> RunResponse:
    """pending, running or paused → cancelled: the work stops now; results so far stay."""
    run = await _transition("cancel", run_id, ctx, session, service)
    executor.interrupt(run.id)
    return RunResponse.model_validate(run)


GONE: dict[int | str, dict[str, Any]] = {
    410: {"description": "The run's results were deleted by the retention policy."}
}


@router.get(
    "/runs/{run_id}/sellers",
    response_model=Page[SellerResponse],
    responses={**AUTH_ERRORS, **RUN_NOT_FOUND, **GONE},
)
async def list_sellers(
    run_id: uuid.UUID,
    ctx: CanView,
    session: SessionDep,
    service: Service,
    page: Annotated[PageParams, Depends(page_params)],
) -> Page[SellerResponse]:
    """eBay sellers ranked by how many distinct collected products they list (then by
    listings, then name), with price range, feedback, and whether each is new since the
    organization's previous completed run."""
    run = await _get_run(service, session, ctx, run_id)
    offset = decode_offset(page.cursor)
    try:
        sellers, more = await results.rank_sellers(session, run, offset=offset, limit=page.limit)
    except results.ResultsPurgedError as exc:
        raise HTTPException(status.HTTP_410_GONE, detail=str(exc)) from None
    return Page(
        items=[SellerResponse.model_validate(s) for s in sellers],
        next_cursor=encode_offset(offset + len(sellers)) if more else None,
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
