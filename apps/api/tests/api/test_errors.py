"""One error model: each kind of domain error has one HTTP status, a message that defaults
to its docstring, and reaches the API as JSON and the pages as an error page."""

from __future__ import annotations

import uuid

import httpx
import pytest

from app.api.errors import status_of
from app.errors import (
    AppError,
    ConflictError,
    ForbiddenError,
    GoneError,
    InvalidError,
    NotFoundError,
    UnauthenticatedError,
    UnavailableError,
)
from app.runs.lifecycle import RunNotFoundError, TransitionNotAllowedError
from app.runs.results import ResultsPurgedError
from app.tables import RunStatus
from tests.helpers.actors import Actors
from tests.helpers.browser import BrowserFactory

TAMPERED_CURSOR = "not-a-cursor"


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        (InvalidError, 400),
        (UnauthenticatedError, 401),
        (ForbiddenError, 403),
        (NotFoundError, 404),
        (ConflictError, 409),
        (GoneError, 410),
        (UnavailableError, 503),
        (AppError, 400),
    ],
)
def test_each_kind_has_one_status(kind: type[AppError], status: int) -> None:
    assert status_of(kind()) == status


def test_domain_errors_carry_what_failed_and_their_kind_s_status() -> None:
    run_id = uuid.uuid4()
    missing = RunNotFoundError(run_id)
    refused = TransitionNotAllowedError(run_id, "pause", RunStatus.PAUSED)
    purged = ResultsPurgedError(run_id, "gone")
    assert (missing.run_id, status_of(missing), missing.message) == (
        run_id,
        404,
        f"run {run_id} not found",
    )
    assert (refused.run_id, refused.action, status_of(refused)) == (run_id, "pause", 409)
    assert "allowed from: running" in refused.message
    assert (purged.run_id, status_of(purged)) == (run_id, 410)


def test_the_message_defaults_to_the_docstring() -> None:
    class NoSuchWidgetError(NotFoundError):
        """No widget with this id.

        Longer explanation that is not part of the message."""

    assert NoSuchWidgetError().message == "No widget with this id."
    assert NoSuchWidgetError("widget 7 not found").message == "widget 7 not found"


async def test_a_domain_error_is_json_on_the_api_and_a_page_on_the_web(
    client: httpx.AsyncClient, actors: Actors, browser: BrowserFactory
) -> None:
    admin = await actors.admin()
    api = await client.get(f"/collection/runs?cursor={TAMPERED_CURSOR}", headers=admin.headers)
    assert api.status_code == 400
    assert api.headers["content-type"] == "application/json"
    message = api.json()["detail"]
    assert "cursor" in message

    page = await (await browser(admin)).get(f"/runs?cursor={TAMPERED_CURSOR}")
    assert page.status_code == 400
    assert page.headers["content-type"].startswith("text/html")
    assert message in page.text


async def test_an_untrusted_token_is_a_401_naming_the_bearer_scheme(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/me", headers={"Authorization": "Bearer not.a.token"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.json()["detail"].startswith("invalid token: ")
