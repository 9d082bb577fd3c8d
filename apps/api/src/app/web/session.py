"""Web sessions: the token in an HttpOnly cookie, CSRF tokens bound to it, the acting
organization, and the one-time sign-in links that `collection-api serve` prints.

The cookie holds the very token the API accepts as a bearer token, and it is verified by
the same code (`app.auth.authenticate`) on every request, so a page can do nothing the
token's owner could not do through the API. A state-changing request must also carry the
CSRF token of its session: an HMAC of the cookie under a key derived from the server's
secret, so it cannot be computed without the cookie, and it changes with the session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

import jwt
from fastapi import Depends, HTTPException, Request, status
from fastapi.responses import Response

from app.auth import ROLE_PERMISSIONS, OrgContext, Principal, authenticate
from app.config import Settings
from app.database import Database, DbActor, acting_as
from app.services import orgs as org_service
from app.tables import Role
from app.web.errors import NoOrganization, SignInRequired, WebError, detail_text

SESSION_COOKIE = "collection_session"
ORG_COOKIE = "collection_org"
SIGN_IN_COOKIE = "collection_sign_in"  # double-submit token of the sign-in form itself
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SIGN_IN_LINK_TTL_SECONDS = 86_400


def is_https(request: Request) -> bool:
    """Whether the browser talks to us over TLS (cookies are then marked Secure)."""
    return request.url.scheme == "https"


def safe_next(target: str | None, default: str = "/") -> str:
    """A local path to go to after signing in; anything else (another site) is dropped."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    if any(char.isspace() or not char.isprintable() for char in target):
        return default  # browsers drop tabs and new lines: "/\t/evil.example" is "//evil..."
    return target


# --- CSRF ------------------------------------------------------------------------------------


def _csrf_key(settings: Settings) -> bytes:
    return hashlib.sha256(
        b"collection-api/web/csrf\0" + settings.jwt_signing_secret.encode()
    ).digest()


def csrf_token_for(settings: Settings, session_token: str) -> str:
    """The CSRF token of a session: HMAC of its cookie (useless without the cookie)."""
    digest = hmac.new(_csrf_key(settings), session_token.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def submitted_csrf_token(request: Request) -> str:
    """The CSRF token a request carries: the X-CSRF-Token header or the form field."""
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        return ""
    value = (await request.form()).get(CSRF_FIELD)
    return value if isinstance(value, str) else ""


def check_origin(request: Request) -> None:
    """Refuse a state-changing request that the browser says another site made.

    `Sec-Fetch-Site` is set by the browser itself (pages cannot forge it) and, unlike
    comparing `Origin` with `Host`, it survives proxies that rewrite the Host header.
    """
    if request.headers.get("sec-fetch-site") in ("cross-site", "same-site"):
        raise WebError(
            status.HTTP_403_FORBIDDEN,
            "This form was sent from another site, so it was refused. "
            "Open the page here and submit it again.",
            title="Request refused",
        )


async def check_csrf(request: Request, expected: str) -> None:
    """Refuse a state-changing request without its session's CSRF token."""
    check_origin(request)
    sent = await submitted_csrf_token(request)
    if not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise WebError(
            status.HTTP_403_FORBIDDEN,
            "This form could not be verified (it may be from before you signed in again). "
            "Reload the page and submit it again.",
            title="Request refused",
        )


# --- the session cookie -------------------------------------------------------------------------


def start_session(response: Response, request: Request, token: str) -> Response:
    """Keep `token` in the session cookie until the token itself expires."""
    expires = jwt.decode(token, options={"verify_signature": False}).get("exp")
    max_age = int(expires - time.time()) if isinstance(expires, int | float) else None
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )
    response.delete_cookie(ORG_COOKIE, path="/", httponly=True, samesite="strict")
    return response


def end_session(response: Response, request: Request) -> Response:
    """Forget the session: the token cookie and the chosen organization."""
    for name in (SESSION_COOKIE, ORG_COOKIE):
        response.delete_cookie(
            name, path="/", httponly=True, samesite="strict", secure=is_https(request)
        )
    return response


def choose_org(response: Response, request: Request, org_id: uuid.UUID) -> Response:
    """Remember which organization this browser acts in."""
    response.set_cookie(
        ORG_COOKIE,
        str(org_id),
        max_age=400 * 86_400,
        path="/",
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )
    return response


async def web_principal(request: Request) -> AsyncIterator[Principal]:
    """The user of the session cookie, verified as the API verifies a bearer token.

    State-changing requests must carry the session's CSRF token. While the request runs,
    its database transactions act as this user, as the API's do.
    """
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequired()
    try:
        principal = await authenticate(request, token)
    except HTTPException as exc:
        if exc.status_code == status.HTTP_401_UNAUTHORIZED:
            raise SignInRequired(f"Your session ended ({detail_text(exc)}).") from None
        raise WebError(exc.status_code, detail_text(exc)) from None
    settings: Settings = request.app.state.settings
    request.state.csrf_token = csrf_token_for(settings, token)
    request.state.principal = principal
    if request.method not in SAFE_METHODS:
        await check_csrf(request, request.state.csrf_token)
    with acting_as(DbActor(user_id=principal.user_id)):
        yield principal


WebPrincipal = Annotated[Principal, Depends(web_principal)]


# --- the acting organization -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrgChoice:
    """One of the user's organizations, for the switcher."""

    org_id: uuid.UUID
    name: str
    role: Role


@dataclass(frozen=True, slots=True)
class WebContext:
    """Who is signed in, the organization they act in, and the CSRF token of their forms."""

    email: str
    org: OrgContext
    org_name: str
    memberships: list[OrgChoice]
    csrf_token: str

    def can(self, key: str) -> bool:
        """Whether the user's role in the acting organization grants permission `key`."""
        return key in ROLE_PERMISSIONS[self.org.role]


async def web_context(request: Request, principal: WebPrincipal) -> AsyncIterator[WebContext]:
    """The acting organization: the one this browser chose, else the first by name.

    From here on the request's database transactions act in it (row-level security), as
    the API's do once `get_org_context` has picked the organization.
    """
    if not principal.memberships:
        raise NoOrganization(principal)
    database: Database = request.app.state.database
    async with database.read() as session:  # before the organization is chosen
        names = await org_service.org_names(session, list(principal.memberships))
    memberships = sorted(
        (OrgChoice(org_id, names[org_id], role) for org_id, role in principal.memberships.items()),
        key=lambda choice: (choice.name.casefold(), str(choice.org_id)),
    )
    chosen = memberships[0]
    wanted = request.cookies.get(ORG_COOKIE)
    for choice in memberships:
        if str(choice.org_id) == wanted:
            chosen = choice
    context = WebContext(
        email=principal.email,
        org=OrgContext(principal.user_id, principal.email, chosen.org_id, chosen.role),
        org_name=chosen.name,
        memberships=memberships,
        csrf_token=request.state.csrf_token,
    )
    request.state.web = context
    with acting_as(DbActor(user_id=principal.user_id, org_id=chosen.org_id)):
        yield context


PERMISSION_NAMES = {
    "collection.view": "see runs and presets",
    "collection.run": "start and control runs",
    "presets.manage": "create, change and delete presets",
    "members.manage": "manage members",
    "admin.automation": "manage the schedule",
}


def require(key: str) -> Callable[[WebContext], Awaitable[WebContext]]:
    """A dependency admitting only users whose role grants `key` (else a 403 page)."""
    if key not in PERMISSION_NAMES:
        raise ValueError(f"unknown permission key {key!r}")

    async def _require(context: Annotated[WebContext, Depends(web_context)]) -> WebContext:
        if not context.can(key):
            raise WebError(
                status.HTTP_403_FORBIDDEN,
                f"Your role in {context.org_name} is {context.org.role.value}, which cannot "
                f"{PERMISSION_NAMES[key]} (permission '{key}'). Ask an admin of the "
                "organization if you need it.",
                title="Not allowed",
            )
        return context

    _require.__name__ = f"require_{key.replace('.', '_')}"
    return _require


CanView = Annotated[WebContext, Depends(require("collection.view"))]
CanRun = Annotated[WebContext, Depends(require("collection.run"))]
CanManagePresets = Annotated[WebContext, Depends(require("presets.manage"))]
CanManageMembers = Annotated[WebContext, Depends(require("members.manage"))]
CanAutomate = Annotated[WebContext, Depends(require("admin.automation"))]


# --- one-time sign-in links ----------------------------------------------------------------


SIGN_IN_LINK_SECONDS = 15 * 60
"""How long a printed sign-in link works (once)."""


class SignInLinks:
    """Codes of the one-time sign-in links printed at start-up (kept only in this process)."""

    def __init__(
        self,
        *,
        ttl_seconds: float = SIGN_IN_LINK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._expiry: dict[bytes, float] = {}  # code digest -> clock time it stops working

    def issue(self) -> str:
        """A new code, valid once within `ttl_seconds`."""
        code = secrets.token_urlsafe(32)
        self._expiry[hashlib.sha256(code.encode()).digest()] = self._clock() + self.ttl_seconds
        return code

    def redeem(self, code: str) -> bool:
        """Whether `code` was issued, is not used yet and not expired; it is used up."""
        expires = self._expiry.pop(hashlib.sha256(code.encode()).digest(), None)
        return expires is not None and self._clock() < expires
