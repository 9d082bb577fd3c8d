"""Web sessions: a random token in an HttpOnly cookie naming a session kept on the server,
CSRF tokens bound to it, and the organization each page and form acts in.

The session is looked up on every request (`app.web_sessions`), in the request's own
transaction: signing out, signing out everywhere, idle time and its maximum age end it
on the server, whatever the browser keeps, on every replica at once. Memberships are read
on every request too (in the same statement), so a page can do nothing its user could
not do through the API right now. A state-changing request must carry the CSRF
token of its session (an HMAC of the cookie under a key derived from the server's secret)
and the organization its form was rendered for, which it then acts in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Depends, Request, status
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import web_sessions
from app.api.deps import SessionDep
from app.auth import ROLE_PERMISSIONS, OrgContext, Principal
from app.core.config import Settings
from app.core.database import DbActor, acting_as
from app.instance import instance_of
from app.tables import Role
from app.web.errors import NoOrganization, SignInRequired, WebError
from app.web_sessions import SessionPolicy

SESSION_COOKIE = "collection_session"
ORG_COOKIE = "collection_org"
SIGN_IN_COOKIE = "collection_sign_in"  # double-submit token of the sign-in form itself
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
ORG_FIELD = "org_id"  # every state-changing form: the organization it was rendered for
ORG_HEADER = "X-Org-Id"  # the same, on requests app.js makes
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ORG_COOKIE_SECONDS = 400 * 86_400


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


def session_policy(settings: Settings) -> SessionPolicy:
    """How long web sessions last, from the settings."""
    return SessionPolicy(
        idle_timeout=timedelta(seconds=settings.web_session_idle_seconds),
        max_age=timedelta(seconds=settings.web_session_max_seconds),
    )


def web_clock(request: Request) -> datetime:
    """The time now, as the web pages see it (tests move `app.state.web_clock`)."""
    clock: Callable[[], datetime] = request.app.state.web_clock
    return clock()


async def start_session(
    response: Response, request: Request, *, session: AsyncSession, user_id: uuid.UUID
) -> Response:
    """Open a server-side session for `user_id` (in the caller's transaction) and give this
    browser its cookie."""
    settings = instance_of(request).settings
    token = await web_sessions.start_session(
        session, user_id=user_id, now=web_clock(request), policy=session_policy(settings)
    )
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.web_session_max_seconds,
        path="/",
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )
    response.delete_cookie(ORG_COOKIE, path="/", httponly=True, samesite="strict")
    return response


def end_session(response: Response, request: Request) -> Response:
    """Forget the session in this browser: the token cookie and the chosen organization."""
    for name in (SESSION_COOKIE, ORG_COOKIE):
        response.delete_cookie(
            name, path="/", httponly=True, samesite="strict", secure=is_https(request)
        )
    return response


def _org_cookie(org_id: uuid.UUID, *, secure: bool) -> str:
    """The Set-Cookie value that makes this browser act in `org_id`."""
    response = Response()
    response.set_cookie(
        ORG_COOKIE,
        str(org_id),
        max_age=ORG_COOKIE_SECONDS,
        path="/",
        httponly=True,
        samesite="strict",
        secure=secure,
    )
    return response.headers["set-cookie"]


def choose_org(response: Response, request: Request, org_id: uuid.UUID) -> Response:
    """Remember which organization this browser acts in."""
    response.headers.append("set-cookie", _org_cookie(org_id, secure=is_https(request)))
    return response


@dataclass(frozen=True, slots=True)
class CurrentSession:
    """The signed-in session of this request: what the header and the account page show."""

    session_id: uuid.UUID
    email: str
    csrf_token: str


async def web_principal(request: Request, session: SessionDep) -> AsyncIterator[Principal]:
    """The user of the session cookie, while the session lasts on the server.

    The session, its user and their memberships are read afresh on every request, as the
    first statement of the request's own transaction. State-changing requests must carry
    the session's CSRF token. While the request runs, its database statements act as
    this user, as the API's do.
    """
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequired()
    settings = instance_of(request).settings
    now = web_clock(request)
    try:
        user = await web_sessions.signed_in(
            session, token=token, now=now, policy=session_policy(settings)
        )
    except web_sessions.SessionEndedError as exc:
        raise SignInRequired(f"Your session ended: {exc}.") from None
    if user.needs_touch(now):
        # A write of its own, at most once a minute: the request's transaction must not
        # hold SQLite's write lock meanwhile.
        await session.rollback()
        await web_sessions.touch(instance_of(request).database, session_id=user.session_id, now=now)
    principal = Principal(user.user_id, user.email, user.memberships)
    request.state.csrf_token = csrf_token_for(settings, token)
    request.state.principal = principal
    request.state.org_names = user.org_names
    request.state.web_session = CurrentSession(
        user.session_id, user.email, request.state.csrf_token
    )
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


async def _named_org(request: Request) -> str | None:
    """The organization a request says it is for: the X-Org-Id header (sent by app.js) or
    the `org_id` field every state-changing form carries; None when it names none."""
    header = request.headers.get(ORG_HEADER)
    if header is not None:
        return header
    if request.method in SAFE_METHODS:
        return None
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        return ""
    value = (await request.form()).get(ORG_FIELD)
    return value if isinstance(value, str) else ""


def _org_of_form(named: str, memberships: list[OrgChoice]) -> OrgChoice:
    """The organization a form (or a script's request) was rendered for, if the user is
    still a member of it; else a page saying which organization it was and that nothing
    was done."""
    try:
        org_id = uuid.UUID(named)
    except ValueError:
        raise WebError(
            status.HTTP_400_BAD_REQUEST,
            "This form does not say which organization it is for (it may be from an older "
            "page), so nothing was changed. Reload the page and submit it again.",
            title="Request refused",
        ) from None
    for choice in memberships:
        if choice.org_id == org_id:
            return choice
    # Not a member: the organization's name is its data, so only its id is shown.
    raise WebError(
        status.HTTP_403_FORBIDDEN,
        f"This form was for organization {org_id}, which you are not a member of (any "
        "more), so nothing was changed. Reload the page to see the organizations you are in.",
        title="Request refused",
    )


async def acting_context(request: Request, principal: Principal) -> WebContext | None:
    """The organization this request acts in, or None for a user without any.

    A state-changing request acts in the organization its form was rendered for (never a
    guess; refused when the user is not a member of it). A page acts in the organization
    the browser chose (the org cookie), else the first by name; that choice is then kept in
    the cookie, so the next page and form show the same one.
    """
    names: dict[uuid.UUID, str] = request.state.org_names  # read with the session
    memberships = sorted(
        (OrgChoice(org_id, names[org_id], role) for org_id, role in principal.memberships.items()),
        key=lambda choice: (choice.name.casefold(), str(choice.org_id)),
    )
    named = await _named_org(request)
    cookie = request.cookies.get(ORG_COOKIE)
    if named is not None:
        chosen = _org_of_form(named, memberships)
        if request.method not in SAFE_METHODS and str(chosen.org_id) != cookie:
            request.state.keep_org = chosen.org_id
    elif not memberships:
        return None
    else:
        chosen = next((c for c in memberships if str(c.org_id) == cookie), None) or memberships[0]
        if str(chosen.org_id) != cookie:
            request.state.keep_org = chosen.org_id
    context = WebContext(
        email=principal.email,
        org=OrgContext(principal.user_id, principal.email, chosen.org_id, chosen.role),
        org_name=chosen.name,
        memberships=memberships,
        csrf_token=request.state.csrf_token,
    )
    request.state.web = context
    return context


async def web_context(request: Request, principal: WebPrincipal) -> AsyncIterator[WebContext]:
    """The acting organization of a page or form (see `acting_context`).

    From here on the request's database transactions act in it (row-level security), as
    the API's do once `get_org_context` has picked the organization.
    """
    context = await acting_context(request, principal)
    if context is None:
        raise NoOrganization(principal)
    with acting_as(DbActor(user_id=principal.user_id, org_id=context.org.org_id)):
        yield context


class KeepActingOrg:
    """ASGI middleware: a page or form that acted in another organization than the org
    cookie names (or with no cookie) leaves that organization in the cookie, so that the
    page after a form's redirect shows the organization the form changed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; add the org cookie to a successful response if needed."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        state = scope.setdefault("state", {})  # request.state, shared with the route

        async def send_with_cookie(message: Message) -> None:
            org_id = state.get("keep_org")
            if message["type"] == "http.response.start" and org_id and message["status"] < 400:
                headers = MutableHeaders(scope=message)
                if not any(
                    value.startswith(f"{ORG_COOKIE}=") for value in headers.getlist("set-cookie")
                ):
                    secure = scope.get("scheme") == "https"
                    headers.append("set-cookie", _org_cookie(org_id, secure=secure))
            await send(message)

        await self.app(scope, receive, send_with_cookie)


PERMISSION_NAMES = {
    "collection.view": "see runs and presets",
    "collection.run": "start and control runs",
    "presets.manage": "create, change and delete presets",
    "members.manage": "manage members",
    "admin.automation": "manage the schedule",
    "org.settings": "change the organization's settings",
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
CanChangeSettings = Annotated[WebContext, Depends(require("org.settings"))]
