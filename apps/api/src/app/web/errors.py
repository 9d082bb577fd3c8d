"""How failures reach a person: error pages, and API messages placed at the form field."""

from __future__ import annotations

from fastapi import HTTPException, status
from pydantic import ValidationError

from app.auth import Principal

FORM = "__form__"  # errors that belong to the whole form, not one field

TITLES = {
    status.HTTP_400_BAD_REQUEST: "That did not work",
    status.HTTP_403_FORBIDDEN: "Not allowed",
    status.HTTP_404_NOT_FOUND: "Not found",
    status.HTTP_409_CONFLICT: "Not possible right now",
    status.HTTP_410_GONE: "Results deleted",
}


class SignInRequired(Exception):
    """The request has no valid session: the browser goes to the sign-in page."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or "sign in required")
        self.reason = reason


class WebError(Exception):
    """An error shown as a page: the status code and a message saying what to do."""

    def __init__(self, status_code: int, message: str, *, title: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.title = title or TITLES.get(status_code, "Something went wrong")


class NoOrganization(Exception):
    """The signed-in user belongs to no organization yet."""

    def __init__(self, principal: Principal) -> None:
        super().__init__(f"{principal.email} belongs to no organization")
        self.principal = principal


def detail_text(exc: HTTPException) -> str:
    """The message of an API error, as a sentence for a page (never a JSON body)."""
    if isinstance(exc.detail, str):
        return exc.detail
    if isinstance(exc.detail, list):
        return "; ".join(str(item.get("msg", item)) for item in exc.detail)
    return str(exc.detail)


def web_error(exc: HTTPException) -> WebError:
    """An API error as an error page with the API's message."""
    return WebError(exc.status_code, detail_text(exc))


def field_errors(exc: ValidationError) -> dict[str, str]:
    """The API's validation messages of a request body, by the form field they belong to."""
    errors: dict[str, str] = {}
    for error in exc.errors():
        location = error["loc"]
        name = str(location[0]) if location else FORM
        message = str(error["msg"]).removeprefix("Value error, ")
        errors.setdefault(name, message)
    return errors


def split_field(message: str, fields: tuple[str, ...]) -> tuple[str, str]:
    """`("timezone", "unknown ...")` from an API message such as `timezone: unknown ...`."""
    name, separator, rest = message.partition(": ")
    if separator and name in fields:
        return name, rest
    return FORM, message
