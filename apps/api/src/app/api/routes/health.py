"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app import __version__
from app.instance import instance_of
from app.models import HealthResponse, ReadinessResponse

router = APIRouter(tags=["health"])
logger = logging.getLogger(__name__)


@router.get(
    "/health",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse, "description": "Restart this instance."}},
)
async def health(request: Request, response: Response) -> HealthResponse:
    """Liveness: the process answers HTTP and, where it executes runs, its run executor
    works (503 when it stopped by itself: restart the process). A draining instance is
    still alive: it answers 200 until it has handed its runs over and exits."""
    instance = instance_of(request)
    executor = instance.executor
    alive = executor.alive
    if not alive:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return HealthResponse(
        status="ok" if alive else "failing",
        version=__version__,
        role=instance.settings.instance_role,
        state="draining" if executor.draining else "running",
        runs_executing=len(executor.running),
    )


@router.get(
    "/ready",
    response_model=ReadinessResponse,
    responses={503: {"model": ReadinessResponse, "description": "A dependency is not ready."}},
)
async def ready(request: Request, response: Response) -> ReadinessResponse:
    """Readiness: the database answers, its schema is at the newest migration, and the
    scheduler runs where this instance runs it (its role is not `api`, and
    SCHEDULER_ENABLED is not false); not ready while it drains on shutdown."""
    instance = instance_of(request)
    database = instance.database
    expected: str | None = request.app.state.schema_head
    checks: dict[str, str] = {}
    try:
        async with database.read() as session:
            current = await session.scalar(sa.text("SELECT version_num FROM alembic_version"))
        checks["database"] = "ok"
        checks["schema"] = (
            "ok" if current == expected else f"at {current}, expected {expected}: run migrate"
        )
    except Exception as exc:  # any failure means not ready; the reason goes to the log
        logger.warning("readiness check failed: %s", exc)
        checks["database"] = f"unreachable: {type(exc).__name__}"
    if instance.settings.runs_scheduler:
        checks["scheduler"] = "ok" if instance.scheduler.running else "not running"
    if instance.executor.draining:
        checks["instance"] = "draining: shutting down"
    is_ready = all(value == "ok" for value in checks.values())
    if not is_ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return ReadinessResponse(status="ready" if is_ready else "not_ready", checks=checks)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text."}},
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this instance."""
    return Response(
        generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST
    )
