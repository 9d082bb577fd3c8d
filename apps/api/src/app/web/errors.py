"""How failures reach a person: error pages, and API messages placed at the form field."""

from __future__ import annotations

from fastapi import status
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from app.api.errors import status_of
from app.auth import Principal
from app.errors import AppError, NotFoundError

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


def web_error(exc: AppError, *, missing: str | None = None) -> WebError:
    """A domain error as an error page with the API's status and message, or for a missing
    resource the page's own words (`missing`) rather than the API's, which name it by id."""
    if missing is not None and isinstance(exc, NotFoundError):
        return WebError(status_of(exc), missing)
    return WebError(status_of(exc), exc.message)


def _plain(error: ErrorDetails) -> str:
    """A validation error in the words of a form, not pydantic's ("Input should be ...")."""
    context = error.get("ctx", {})
    kind = error["type"]
    if kind == "missing" or (kind == "string_too_short" and context.get("min_length") == 1):
        return "fill in this field"
    wording = {
        "string_too_short": "use at least {min_length} characters",
        "string_too_long": "use at most {max_length} characters",
        "too_short": "give at least {min_length}",
        "too_long": "give at most {max_length}",
        "less_than_equal": "use a number no larger than {le}",
        "less_than": "use a number smaller than {lt}",
        "greater_than_equal": "use a number of at least {ge}",
        "greater_than": "use a number larger than {gt}",
        "int_parsing": "enter a whole number, such as 20",
        "int_type": "enter a whole number, such as 20",
        "int_from_float": "enter a whole number, such as 20",
        "uuid_parsing": "choose one from the list",
        "enum": "choose one of {expected}",
        "literal_error": "choose one of {expected}",
        "extra_forbidden": "this field is not part of the form; reload the page",
    }.get(kind)
    if wording is None:
        return str(error["msg"]).removeprefix("Value error, ")
    try:
        return wording.format(**context)
    except KeyError:
        return str(error["msg"])


def field_errors(exc: ValidationError) -> dict[str, str]:
    """The API's validation messages of a request body, by the form field they belong to."""
    errors: dict[str, str] = {}
    for error in exc.errors():
        location = error["loc"]
        name = str(location[0]) if location else FORM
        errors.setdefault(name, _plain(error))
    return errors


def split_field(message: str, fields: tuple[str, ...]) -> tuple[str, str]:
    """`("timezone", "unknown ...")` from an API message such as `timezone: unknown ...`."""
    name, separator, rest = message.partition(": ")
    if separator and name in fields:
        return name, rest
    return FORM, message
