"""FastAPI application factory and the instance lifespan (opens the database, starts and
drains background work; `app.worker` uses it too)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from prometheus_client import CollectorRegistry

from app import __version__, web
from app.api import errors as api_errors
from app.api.body_limit import BodyLimitMiddleware
from app.api.openapi import openapi_schema
from app.api.routes import (
    health,
    orgs,
    presets,
    run_events,
    runs,
    schedules,
    sellers,
    watchlists,
)
from app.auth import TokenVerifier
from app.core.config import Settings
from app.core.database import Database
from app.core.observability import HttpMetrics, RequestContextMiddleware
from app.instance import Instance
from app.migrate import head_revision
from app.scheduling.background import BackgroundWork

logger = logging.getLogger(__name__)

DESCRIPTION = """
Collect Amazon best sellers by category, find the eBay sellers who list those products,
and do it on a cron schedule.

**Authentication**: every endpoint except `/health`, `/ready` and `/metrics` needs
`Authorization: Bearer <JWT>` (get one locally with `collection-api token --email you@example.com`).

**Organization**: requests act in the caller's only organization, or in the one named by
the `X-Org-Id` header. Another organization's resources answer 404.

**Lists** answer `{"items": [...], "next_cursor": ...}`, newest first; pass `next_cursor`
back as `?cursor=` for the next page.
"""


Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def instance_lifespan(settings: Settings, registry: CollectorRegistry) -> Lifespan:
    """The lifespan of an instance (the API's app and the worker's alike): open the
    database, build the instance, start its background work as its role asks; on
    shutdown drain it (see `BackgroundWork.drain`) and close everything."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database.from_settings(settings)
        http = httpx.AsyncClient()
        app.state.schema_head = head_revision(settings)
        app.state.token_verifier = TokenVerifier(settings, http=http)
        instance = Instance.build(settings, database, http=http, registry=registry)
        app.state.instance = instance
        background = BackgroundWork(instance)
        await background.start()
        logger.info(
            "instance %s (role %s) ready on %s database (providers: amazon=%s, ebay=%s)",
            settings.instance_id,
            settings.instance_role,
            database.dialect,
            instance.amazon.name,
            instance.ebay.name,
        )
        try:
            yield
        finally:
            await background.drain()
            await instance.mailer.drain()
            await http.aclose()
            await database.dispose()
            logger.info("instance %s stopped", settings.instance_id)

    return lifespan


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application for `settings` (read from the environment when omitted)."""
    settings = settings or Settings()
    registry = CollectorRegistry()

    app = FastAPI(
        title="Collection API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=instance_lifespan(settings, registry),
    )
    app.state.metrics_registry = registry
    # FastAPI's documented way to extend the schema is to replace this method.
    app.openapi = partial(openapi_schema, app)  # type: ignore[method-assign]
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_body_bytes)
    app.add_middleware(RequestContextMiddleware, metrics=HttpMetrics(registry))
    for route in (health, orgs, presets, runs, run_events, schedules, sellers, watchlists):
        app.include_router(route.router)
    api_errors.install(app)
    app.add_exception_handler(RequestValidationError, _validation_error)
    web.install(app)  # the pages at /, after the API so its routes come first
    return app


MAX_ECHOED_CHARACTERS = 200
"""A 422 shows this much of the input it refuses, never the whole of a large body."""


def _excerpt(value: object) -> object:
    """`value` when short, else the start of its JSON text, marked as cut."""
    text = value if isinstance(value, str) else json.dumps(jsonable_encoder(value))
    if len(text) <= MAX_ECHOED_CHARACTERS:
        return value
    return f"{text[:MAX_ECHOED_CHARACTERS]}… ({len(text):,} characters)"


async def _validation_error(_request: Request, exc: Exception) -> Response:
    """FastAPI's 422 answer, with the input it echoes cut to a short excerpt and the JSON
    escaped to ASCII (input that is not valid Unicode, a lone surrogate sent as `\\ud800`,
    must not turn the client's mistake into a 500)."""
    assert isinstance(exc, RequestValidationError)
    errors = jsonable_encoder(exc.errors())
    for error in errors:
        error["msg"] = _excerpt(error["msg"])
        if "input" in error:
            error["input"] = _excerpt(error["input"])
    body = json.dumps({"detail": errors}, ensure_ascii=True)
    return Response(body, status_code=422, media_type="application/json")
