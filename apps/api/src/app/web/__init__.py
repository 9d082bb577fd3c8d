"""The web UI: server-rendered pages for admins and members, served by the API's own app
with its own rules (pages call the API's endpoint functions; nothing is enforced only by
hiding a link)."""

from __future__ import annotations

import urllib.parse

from fastapi import FastAPI, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app.api.body_limit import BodyTooLargeError
from app.api.errors import app_error_handler, status_of
from app.core.clock import utcnow
from app.errors import AppError
from app.web import (
    account,
    members,
    org_settings,
    presets,
    run_estimate,
    run_events,
    run_sellers,
    runs,
    runs_list,
    schedule,
    schedule_form,
    schedules,
    sellers,
    watchlist,
)
from app.web.errors import NoOrganization, SignInRequired, WebError
from app.web.rendering import STATIC, query, render
from app.web.session import KeepActingOrg

FETCH_HEADER = "x-requested-with"  # sent by app.js with the parts of pages it refreshes


def install(app: FastAPI) -> None:
    """Add the pages, their static files and their error pages to `app`."""
    app.state.web_clock = utcnow
    app.add_middleware(KeepActingOrg)

    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for module in (account, runs_list, runs, presets, members, schedule, schedules, schedule_form):
        app.include_router(module.router)
    for module in (run_events, run_sellers, run_estimate, sellers, org_settings, watchlist):
        app.include_router(module.router)
    app.add_exception_handler(SignInRequired, _sign_in_required)
    app.add_exception_handler(WebError, _error_page)
    # replaces the API's handler (installed first): the API's paths still answer JSON
    app.add_exception_handler(AppError, _domain_error)
    app.add_exception_handler(NoOrganization, _no_organization)


def local_url(host: str, port: int) -> str:
    """The address to open a server bound to `host`:`port` on this machine."""
    shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # noqa: S104 (a comparison)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def sign_in_url(base_url: str, code: str) -> str:
    """The one-time sign-in link of `code` on the server at `base_url`."""
    return f"{base_url.rstrip('/')}/sign-in/link?{urllib.parse.urlencode({'code': code})}"


def _is_api(app: FastAPI, request: Request) -> bool:
    """Whether the path lies under one of the API's sections (/collection, /orgs, /docs...)."""
    paths = [*app.openapi()["paths"], app.docs_url, app.redoc_url, app.openapi_url]
    sections = {path.split("/")[1] for path in paths if path}
    return request.url.path.split("/")[1] in sections


async def _http_error(request: Request, exc: Exception) -> Response:
    """An unknown page or a wrong method as an HTML page for browsers; the API's stay JSON.
    A request body over the limit is refused in plain words, as a page for the web forms."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == status.HTTP_413_CONTENT_TOO_LARGE:
        return _too_large(request, exc)
    if exc.status_code == status.HTTP_400_BAD_REQUEST and exc.detail == FASTAPI_UNREADABLE_BODY:
        exc = StarletteHTTPException(status.HTTP_400_BAD_REQUEST, UNREADABLE_BODY)
    if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        exc.headers = {**(exc.headers or {}), "Allow": _allowed_methods(request)}
    wants_page = "text/html" in request.headers.get("accept", "")
    if not wants_page or exc.status_code not in (404, 405) or _is_api(request.app, request):
        return await http_exception_handler(request, exc)  # FastAPI's own, as before
    message = (
        "This address receives forms; open the page and use its buttons instead."
        if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED
        else "There is no page at this address."
    )
    return render(
        request,
        "error.html",
        status_code=exc.status_code,
        code=exc.status_code,
        title="Not found",
        message=message,
    )


FASTAPI_UNREADABLE_BODY = "There was an error parsing the body"
"""FastAPI's words for a body it could not decode at all (bytes that are not UTF-8); JSON
syntax errors are a 422 of their own."""
UNREADABLE_BODY = (
    "the request body could not be read: send JSON encoded as UTF-8, with "
    "'Content-Type: application/json'"
)

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (Starlette names only the first route's,
    and FastAPI makes one route per method)."""
    return ", ".join(
        method
        for method in HTTP_METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.router.routes
        )
    )


def _too_large(request: Request, exc: StarletteHTTPException) -> Response:
    if _is_api(request.app, request) or not isinstance(exc, BodyTooLargeError):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
    return render(
        request,
        "error.html",
        status_code=exc.status_code,
        code=exc.status_code,
        title="Too much at once",
        message=f"The form sent more than {exc.limit:,} bytes. Shorten what you typed and "
        "send it again.",
    )


async def _sign_in_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    if request.headers.get(FETCH_HEADER) == "fetch":
        return Response(status_code=status.HTTP_401_UNAUTHORIZED)
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    target = query(
        "/sign-in",
        next=here if request.method == "GET" and here != "/" else None,
        reason="ended" if exc.reason else None,
    )
    return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)


async def _error_page(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, WebError)
    return render(
        request,
        "error.html",
        status_code=exc.status_code,
        code=exc.status_code,
        title=exc.title,
        message=exc.message,
    )


async def _domain_error(request: Request, exc: Exception) -> Response:
    """A domain error no page caught (a tampered cursor in a link, say): the API's JSON on
    the API's paths, an error page with the same status and message on the pages."""
    assert isinstance(exc, AppError)
    if _is_api(request.app, request):
        return await app_error_handler(request, exc)
    return await _error_page(request, WebError(status_of(exc), exc.message))


async def _no_organization(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NoOrganization)
    return account.no_organization_page(request, exc.principal)
