"""The one place where domain errors become HTTP answers, and how the API documents them."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from app.errors import (
    AppError,
    ConflictError,
    ForbiddenError,
    GoneError,
    InvalidError,
    NotFoundError,
    UnauthenticatedError,
    UnavailableError,
    UnprocessableError,
)

STATUS_OF: dict[type[AppError], int] = {
    InvalidError: status.HTTP_400_BAD_REQUEST,
    UnauthenticatedError: status.HTTP_401_UNAUTHORIZED,
    ForbiddenError: status.HTTP_403_FORBIDDEN,
    NotFoundError: status.HTTP_404_NOT_FOUND,
    ConflictError: status.HTTP_409_CONFLICT,
    GoneError: status.HTTP_410_GONE,
    UnavailableError: status.HTTP_503_SERVICE_UNAVAILABLE,
    UnprocessableError: status.HTTP_422_UNPROCESSABLE_CONTENT,
}

Responses = dict[int | str, dict[str, Any]]

AUTH_ERRORS: Responses = {
    401: {"description": "Missing, invalid or expired bearer token."},
    403: {"description": "Not a member of the organization, or the role lacks the permission."},
}


def status_of(exc: AppError) -> int:
    """The HTTP status of a domain error: that of its kind (400 for a bare AppError)."""
    for kind in type(exc).__mro__:
        if kind in STATUS_OF:
            return STATUS_OF[kind]
    return status.HTTP_400_BAD_REQUEST


async def app_error_handler(_request: Request, exc: Exception) -> Response:
    """`{"detail": message}` with the status of the error's kind, like an HTTPException;
    a 401 says which scheme to use (RFC 6750)."""
    assert isinstance(exc, AppError)
    headers = (
        {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        if isinstance(exc, UnauthenticatedError)
        else None
    )
    return JSONResponse({"detail": exc.message}, status_code=status_of(exc), headers=headers)


def install(app: FastAPI) -> None:
    """Answer every AppError an endpoint raises with its status and message."""
    app.add_exception_handler(AppError, app_error_handler)


def invalid_query(name: str, message: str, value: str) -> RequestValidationError:
    """A 422 for query parameter `name`, shaped like FastAPI's own (a rule across several
    parameters, such as `until` after `since`, that a parameter's type cannot say)."""
    return RequestValidationError(
        [{"type": "value_error", "loc": ("query", name), "msg": message, "input": value}]
    )
