"""Structured logs with a request id, and Prometheus metrics of the HTTP layer."""

from __future__ import annotations

import contextvars
import copy
import json
import logging
import re
import sys
import time
import uuid
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.text import escape_refused

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_STANDARD_RECORD_FIELDS = set(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id and extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_RECORD_FIELDS and value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """Readable lines for a terminal, extra fields appended as key=value.

    Every value a record carries is escaped (a newline in a requested path is written
    `\\x0a`), so no input can start a line that looks like another record; a traceback's
    lines are indented under the record they belong to.
    """

    def format(self, record: logging.LogRecord) -> str:
        fields = copy.copy(record)
        fields.msg, fields.args = escape_refused(record.getMessage()), None
        fields.exc_info = fields.exc_text = fields.stack_info = None
        line = super().format(fields)
        extras = [
            f"{key}={escape_refused(str(value))}"
            for key, value in record.__dict__.items()
            if key not in _STANDARD_RECORD_FIELDS and value is not None
        ]
        if extras:
            line = f"{line} [{' '.join(extras)}]"
        details = []
        if record.exc_info:
            details.append(self.formatException(record.exc_info))
        if record.stack_info:
            details.append(self.formatStack(record.stack_info))
        for detail in details:
            line += "".join(f"\n    {escape_refused(text)}" for text in detail.splitlines())
        return line


def exception_line(exc: BaseException) -> str:
    """`Type: first line of the message`, at most 200 characters: how a failure that repeats
    is logged after its first time (which is logged with its traceback)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"[:200] if first else type(exc).__name__


def configure_logging(level: str, fmt: str) -> None:
    """Route every log record (ours, uvicorn's, alembic's) through one formatted handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "alembic"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Our middleware logs each request with its id; uvicorn's access log would repeat it.
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every request's full URL at INFO, and Keepa takes its API key as a query
    # parameter: keep those lines out of the logs (warnings and errors still show).
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    # The schedule engine re-arms one APScheduler job at every wake-up (every
    # SCHEDULER_POLL_SECONDS), and APScheduler logs each add, run and removal at INFO:
    # keep its lines for LOG_LEVEL=DEBUG; our engine logs one line per fire itself.
    logging.getLogger("apscheduler").setLevel(
        logging.DEBUG if root.level <= logging.DEBUG else max(logging.WARNING, root.level)
    )


class HttpMetrics:
    """Request counters and latency histograms, labelled by route template (not raw path)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ["method", "route"],
            registry=registry,
        )


access_logger = logging.getLogger("app.access")
logger = logging.getLogger(__name__)


class RequestContextMiddleware:
    """Gives each request an id (kept from X-Request-ID when sane), logs it, and counts it.

    Pure ASGI, so streamed responses are neither buffered nor cut from their context.
    """

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status_code = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        response_started = False

        async def send_tracking(message: Message) -> None:
            nonlocal response_started
            response_started = True
            await send_with_id(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception:
            # A bug: log it with its traceback and answer 500 without leaking internals.
            logger.exception("unhandled error in %s %s", scope["method"], _target(scope))
            if not response_started:
                await send_tracking(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                body = {"detail": "internal server error", "request_id": request_id}
                await send_tracking(
                    {"type": "http.response.body", "body": json.dumps(body).encode()}
                )
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "<unmatched>"
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status_code)).inc()
            self.metrics.latency.labels(method, route).observe(elapsed)
            access_logger.info(
                "%s %s %s %.1fms",
                method,
                _target(scope),
                status_code,
                elapsed * 1000,
                extra={"status": status_code, "duration_ms": round(elapsed * 1000, 1)},
            )
            request_id_var.reset(token)


def _target(scope: Scope) -> str:
    """The path as the client sent it (still percent-encoded, so `%0A` stays three
    characters), falling back to the decoded path for servers that give no raw one."""
    raw = scope.get("raw_path")
    return bytes(raw).decode("latin-1") if raw else str(scope["path"])


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None
