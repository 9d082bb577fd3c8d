"""Request bodies over MAX_REQUEST_BODY_BYTES are refused with 413 before they are read in
full: a client cannot make the service parse, echo or hold an unbounded body."""

from __future__ import annotations

from fastapi import HTTPException, status
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLargeError(HTTPException):
    """The request body is larger than the service accepts."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"the request body is larger than the {limit:,} bytes this service accepts "
            "(MAX_REQUEST_BODY_BYTES): send less",
        )
        self.limit = limit


class BodyLimitMiddleware:
    """Counts the body as the app reads it and raises BodyTooLargeError past the limit (at
    once when Content-Length announces more); the app's error handlers answer, so the API
    gets JSON and the web forms a page. A body nobody reads is never refused."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise BodyTooLargeError(self.max_bytes)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)
