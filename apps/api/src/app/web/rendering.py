"""Rendering of the web pages: the Jinja environment, its filters, and the response headers."""

from __future__ import annotations

import functools
import hashlib
import urllib.parse
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import idna
import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from app import __version__
from app.core.clock import utcnow
from app.scheduling.cron import CronError, parse_timezone

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
FLASH_COOKIE = "collection_flash"
ZONE_COOKIE = "collection_zone"
"""The reader's IANA time zone, set by app.js: pages write moments in it."""

# Pages load nothing but this site's own files: no inline script, no third party.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


HSTS = "max-age=31536000"
"""Over https, browsers keep to https for a year (plain-http visits stay as they are)."""


def moment_text(moment: datetime) -> str:
    """The one way pages write a moment: `Mon 2026-12-07 06:00 CET`, in the moment's own
    zone (app.js writes the same pattern in the reader's zone)."""
    return f"{moment:%a %Y-%m-%d %H:%M} {moment.tzname()}"


def viewer_zone(request: Request) -> str | None:
    """The reader's IANA time zone, as app.js records it in a cookie (None until it has,
    or when the cookie names no zone this server knows)."""
    name = urllib.parse.unquote(request.cookies.get(ZONE_COOKIE, ""))
    if not name:
        return None
    try:
        return parse_timezone(name).key
    except CronError:
        return None


@jinja2.pass_context
def when(
    context: jinja2.runtime.Context, moment: datetime | None, timezone: str | None = None
) -> Markup:
    """A `<time>` element showing the moment: in the given IANA time zone (a schedule's own),
    else in the reader's (`viewer_zone`; UTC until app.js has said which), marked
    `data-local` for app.js to show in the reader's zone should it differ. Moments shown
    in another zone than UTC carry the UTC time as their tooltip."""
    if moment is None:
        return Markup('<span class="muted">—</span>')
    if timezone:
        local = moment.astimezone(ZoneInfo(timezone))
        return Markup('<time datetime="{}">{}</time>').format(local.isoformat(), moment_text(local))
    zone = context.get("viewer_zone") or "UTC"
    local = moment.astimezone(ZoneInfo(zone))
    utc = moment_text(moment.astimezone(UTC))
    return Markup('<time datetime="{}" data-local data-zone="{}" title="{}">{}</time>').format(
        moment.astimezone(UTC).isoformat(), zone, utc, moment_text(local)
    )


@jinja2.pass_context
def when_text(context: jinja2.runtime.Context, moment: datetime) -> str:
    """The moment as `when` writes it, as plain text (for an `<option>`, which holds no
    element): in the reader's zone, UTC until app.js has said which."""
    return moment_text(moment.astimezone(ZoneInfo(context.get("viewer_zone") or "UTC")))


def in_zone(moment: datetime, timezone: str) -> datetime:
    """The moment as a wall time in the IANA time zone (for a template's own format)."""
    return moment.astimezone(ZoneInfo(timezone))


def duration(start: datetime | None, end: datetime | None) -> str:
    """How long something took, e.g. `2 min 5 s`; empty when it has not started."""
    if start is None:
        return ""
    return span((end or utcnow()) - start)


def span(length: timedelta | float) -> str:
    """A length of time in whole units a person reads at a glance: `45 s`, `2 min 5 s`,
    `1 h 5 min`, `2 d 3 h` (seconds dropped past an hour, minutes past a day)."""
    seconds = int(length.total_seconds() if isinstance(length, timedelta) else length)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        rest = seconds % 60
        return f"{seconds // 60} min" + (f" {rest} s" if rest else "")
    if seconds < 86_400:
        rest = seconds % 3600 // 60
        return f"{seconds // 3600} h" + (f" {rest} min" if rest else "")
    rest = seconds % 86_400 // 3600
    return f"{seconds // 86_400} d" + (f" {rest} h" if rest else "")


def about(length: timedelta) -> str:
    """A remaining time as an estimate reads: `less than a minute`, else `about 4 min`,
    `about 1 h 5 min` (whole minutes, rounded up: an estimate that runs out early is worse
    than one that runs out late)."""
    seconds = length.total_seconds()
    if seconds < 60:
        return "less than a minute"
    return f"about {span(-(-seconds // 60) * 60)}"


def signed(value: int | Decimal | None, places: int = 0) -> str:
    """A change with its sign: `+3`, `0`, and `-1.50` written with a true minus sign
    (U+2212), which screen readers say and which lines up with the plus."""
    if value is None:
        return "—"
    text = f"{abs(value):,.{places}f}"
    return f"+{text}" if value > 0 else f"\u2212{text}" if value < 0 else text


def number(value: int | None) -> str:
    """An integer with thousands separators."""
    return "—" if value is None else f"{value:,}"


def money(value: Decimal | None, currency: str | None = None) -> str:
    """An amount with two decimals and, when given, its currency code: `1,234.50 USD`."""
    if value is None:
        return "—"
    return f"{value:,.2f} {currency}" if currency else f"{value:,.2f}"


def percent(part: int, whole: int) -> int:
    """`part` of `whole` in whole percent (0 when there is no whole yet)."""
    return 0 if whole <= 0 else min(100, round(100 * part / whole))


def display_email(address: str) -> str:
    """An address as a person can check it: an internationalised domain is followed by the
    ASCII form mail actually goes to, so a look-alike domain (a Cyrillic letter among
    Latin ones) shows as what it is: `ana@bücher.de (xn--bcher-kva.de)`."""
    _, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    try:
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError:
        return f"{address} (not a valid domain name)"
    return f"{address} ({ascii_domain})"


def query(base: str, **params: Any) -> str:
    """`base` with the non-empty `params` as its query string."""
    kept = {k: v for k, v in params.items() if v not in (None, "", False)}
    return f"{base}?{urllib.parse.urlencode(kept)}" if kept else base


@functools.cache
def static_url(path: str) -> str:
    """The URL of a static file, versioned by its content: a changed file is a new URL, so
    no browser keeps an old stylesheet or script after an upgrade."""
    digest = hashlib.sha256((STATIC / path).read_bytes()).hexdigest()[:12]
    return f"/static/{path}?v={digest}"


environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters.update(
    when=when,
    number=number,
    money=money,
    email=display_email,
    span=span,
    in_zone=in_zone,
    about=about,
    signed=signed,
    when_text=when_text,
)
environment.globals.update(
    duration=duration,
    percent=percent,
    query=query,
    version=__version__,
    static=static_url,
)


def render(
    request: Request, template: str, *, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """Render a page (or a fragment) with the signed-in context, flash message and headers."""
    flash = urllib.parse.unquote(request.cookies.get(FLASH_COOKIE, ""))
    page = environment.get_template(template).render(
        request=request,
        web=getattr(request.state, "web", None),
        flash=flash.removeprefix("!") or None,
        flash_error=flash.startswith("!"),
        viewer_zone=viewer_zone(request),
        **context,
    )
    headers = SECURITY_HEADERS
    if request.url.scheme == "https":  # (behind a proxy: see FORWARDED_ALLOW_IPS in README)
        headers = {**SECURITY_HEADERS, "Strict-Transport-Security": HSTS}
    response = HTMLResponse(page, status_code=status_code, headers=headers)
    if flash and not template.rpartition("/")[2].startswith("_"):  # fragments keep it
        response.delete_cookie(FLASH_COOKIE, path="/", httponly=True, samesite="strict")
    return response


def flash(response: Response, request: Request, message: str, *, error: bool = False) -> Response:
    """Show `message` on the next page this browser renders (after a redirect)."""
    response.set_cookie(
        FLASH_COOKIE,
        urllib.parse.quote(("!" if error else "") + message),
        max_age=60,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response
