"""One error model for what a request can ask that cannot be done.

Domain code raises a subclass of one of the kinds below, carrying the ids of what failed
and a message that says what to fix; `app.api.errors` maps each kind to its HTTP status in
one place, and the web pages show the same message. A class's docstring is its default
message, so `raise NotFoundError()` still says something useful.

Errors that never reach a caller (a lost lease, a provider out of quota) are not
`AppError`s: they are control flow inside the pipeline, handled where they are raised.
"""

from __future__ import annotations


class AppError(Exception):
    """The request cannot be done."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or _first_line(type(self).__doc__) or "error")

    @property
    def message(self) -> str:
        """What went wrong and what to do, in the words shown to the user."""
        return str(self)


class NotFoundError(AppError):
    """No such resource in the acting organization."""


class ConflictError(AppError):
    """Not possible in the resource's current state."""


class GoneError(AppError):
    """The resource existed but its data is gone."""


class InvalidError(AppError):
    """The request is not valid."""


class UnprocessableError(InvalidError):
    """The request is well-formed, but what it asks for cannot be done as asked."""


class ForbiddenError(AppError):
    """The acting user may not do this."""


class UnauthenticatedError(AppError):
    """The request's credentials cannot be trusted."""


class UnavailableError(AppError):
    """Something the request depends on is unavailable; try again later."""


def _first_line(text: str | None) -> str:
    return (text or "").strip().split("\n", 1)[0]
