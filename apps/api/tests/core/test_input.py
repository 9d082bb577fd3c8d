"""Input a person or a client can send that must be refused in plain words or neutralised,
never a 500 and never stored as it came: control and invisible characters in any text,
oversized bodies, out-of-range page numbers, log forging, spreadsheet formulas in exports,
and the OpenAPI document that says all of it."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.auth import issue_token
from app.core.config import Settings
from app.core.observability import JsonFormatter, TextFormatter
from app.scheduling.cron import time_zone_names
from tests.helpers.actors import Actor, Actors
from tests.helpers.browser import Browser

HTML = "text/html; charset=utf-8"
MiB = 1024 * 1024

# NUL is a 500 on PostgreSQL and lands raw in pages on SQLite; the others make a name read
# other than it is stored (an ANSI escape, a right-to-left override, a zero-width space).
REFUSED_TEXT = ["\x00", "Acme\x00Corp", "Acme\x1b[31m", "\u202eevil.exe", "zero\u200bwidth"]


@pytest.fixture
async def web_admin(app: FastAPI, admin: Actor) -> AsyncIterator[Browser]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        browser = Browser(http)
        assert (await browser.sign_in(admin.token)).status_code == 303
        yield browser


async def _preset(client: httpx.AsyncClient, actor: Actor) -> str:
    response = await client.post(
        "/collection/presets",
        json={"name": "Electronics", "category_ids": ["172282"]},
        headers=actor.headers,
    )
    assert response.status_code == 201, response.text
    preset_id: str = response.json()["id"]
    return preset_id


def _refusal(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    message: str = response.json()["detail"][0]["msg"]
    assert "must not contain" in message, message
    return message


# --- text in the API ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", REFUSED_TEXT)
async def test_names_with_control_or_invisible_characters_are_refused_and_not_stored(
    client: httpx.AsyncClient, admin: Actor, text: str
) -> None:
    preset_id = await _preset(client, admin)
    attempts = [
        client.post("/orgs", json={"name": text}, headers=admin.headers),
        client.post(
            "/collection/presets",
            json={"name": text, "category_ids": ["1"]},
            headers=admin.headers,
        ),
        client.patch(
            f"/collection/presets/{preset_id}", json={"name": text}, headers=admin.headers
        ),
        client.post(
            "/collection/runs",
            json={"preset_id": preset_id, "name": text},
            headers=admin.headers,
        ),
    ]
    for attempt in attempts:
        _refusal(await attempt)
    me = (await client.get("/me", headers=admin.headers)).json()
    assert [m["org_name"] for m in me["memberships"]] == ["Acme"]
    presets = (await client.get("/collection/presets", headers=admin.headers)).json()["items"]
    assert [p["name"] for p in presets] == ["Electronics"]
    runs = (await client.get("/collection/runs", headers=admin.headers)).json()["items"]
    assert runs == []


async def test_the_refusal_says_which_character_and_where(
    client: httpx.AsyncClient, admin: Actor
) -> None:
    response = await client.post(
        "/collection/presets",
        json={"name": "Acme\u202eCorp", "category_ids": ["1"]},
        headers=admin.headers,
    )
    assert _refusal(response).endswith(
        "must not contain a text-direction override (U+202E at position 5)"
    )


@pytest.mark.parametrize("email", ["ana\x00@example.com", "ana@exa\u200bmple.com", "\u202eana@x"])
async def test_invitation_emails_with_control_or_invisible_characters_are_refused(
    client: httpx.AsyncClient, admin: Actor, email: str
) -> None:
    _refusal(
        await client.post(
            "/orgs/current/members", json={"email": email, "role": "member"}, headers=admin.headers
        )
    )
    revoke = await client.delete(
        f"/orgs/current/invitations/{urllib.parse.quote(email)}",
        headers=admin.headers,
    )
    _refusal(revoke)
    invitations = await client.get("/orgs/current/invitations", headers=admin.headers)
    assert invitations.json()["items"] == []


@pytest.mark.parametrize("email", ["ana\x00@example.com", "ana@example.com\u202e", "a\nb@x.org"])
async def test_a_token_whose_email_claim_holds_control_characters_is_401(
    client: httpx.AsyncClient, settings: Settings, email: str
) -> None:
    token = issue_token(settings, user_id=uuid.uuid4(), email=email)
    response = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert "claim 'email' must not contain" in response.json()["detail"]


async def test_a_lone_surrogate_in_a_token_email_is_401_not_500(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    token = issue_token(settings, user_id=uuid.uuid4(), email="ana\ud800@example.com")
    response = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text


# --- text in the web forms ---------------------------------------------------------------------


@pytest.mark.parametrize("text", ["\x00", "Evil\u202eCorp"])
async def test_web_forms_refuse_control_and_invisible_characters_at_the_field(
    client: httpx.AsyncClient, admin: Actor, web_admin: Browser, text: str
) -> None:
    created = await web_admin.submit(
        "/presets", {"name": text, "category_ids": "1"}, page="/presets/new"
    )
    assert created.status_code == 400, created.text
    assert created.headers["content-type"] == HTML
    assert "must not contain" in created.text
    added = await web_admin.submit(
        "/members", {"email": f"ana{text}@example.com", "role": "member"}, page="/members"
    )
    assert added.status_code == 400, added.text
    assert "must not contain" in added.text
    presets = (await client.get("/collection/presets", headers=admin.headers)).json()["items"]
    assert presets == []


async def test_the_schedule_form_refuses_a_nul_at_the_field(
    client: httpx.AsyncClient, admin: Actor, web_admin: Browser
) -> None:
    preset_id = await _preset(client, admin)
    response = await web_admin.submit(
        "/schedule",
        {"preset_id": preset_id, "cron_expression": "0 0 1 * *\x00", "timezone": "UTC"},
        page="/schedule",
    )
    assert response.status_code == 400, response.text
    assert "must not contain a control character" in response.text


async def test_withdrawing_an_invitation_with_a_nul_in_the_form_says_why(
    web_admin: Browser,
) -> None:
    response = await web_admin.submit(
        "/members/invitations/revoke", {"email": "ana\x00@example.com"}, page="/members"
    )
    assert response.status_code == 303, response.text
    page = await web_admin.get("/members")
    assert "Not withdrawn: the email must not contain a control character" in page.text


async def test_new_organization_form_refuses_a_nul(app: FastAPI, actors: Actors) -> None:
    newcomer = actors.user()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        browser = Browser(http)
        await browser.sign_in(newcomer.token)
        response = await browser.submit("/organization/new", {"name": "Acme\x00"}, page="/")
    assert response.status_code == 400, response.text
    assert "must not contain a control character" in response.text


async def test_internationalised_email_domains_show_their_ascii_form(
    client: httpx.AsyncClient, admin: Actor, web_admin: Browser
) -> None:
    for email in ("ana@bücher.example", "bob@pаypal.example"):  # noqa: RUF001 (a Cyrillic letter)
        response = await client.post(
            "/orgs/current/members", json={"email": email, "role": "viewer"}, headers=admin.headers
        )
        assert response.status_code == 201, response.text
    page = (await web_admin.get("/members")).text
    assert "ana@bücher.example (xn--bcher-kva.example)" in page
    assert "bob@pаypal.example (xn--pypal-4ve.example)" in page  # noqa: RUF001


# --- page numbers --------------------------------------------------------------------------------


async def _run_page(
    client: httpx.AsyncClient, admin: Actor, web_admin: Browser, page: str
) -> httpx.Response:
    """A new run's page (no sellers yet, so one page) with `?page=` as given."""
    created = await client.post(
        "/collection/runs", json={"category_ids": ["1"]}, headers=admin.headers
    )
    assert created.status_code == 201, created.text
    return await web_admin.get(f"/runs/{created.json()['id']}", params={"page": page})


@pytest.mark.parametrize("page", ["²", "-1", "0", "1e9", ""])
async def test_a_run_page_number_that_is_no_number_shows_the_first_page(
    client: httpx.AsyncClient, admin: Actor, web_admin: Browser, page: str
) -> None:
    response = await _run_page(client, admin, web_admin, page)
    assert response.status_code == 200, response.text
    assert "No page " not in response.text


@pytest.mark.parametrize("page", ["2", "9" * 20, "9" * 5000])
async def test_a_run_page_number_past_the_end_says_so_however_long(
    client: httpx.AsyncClient, admin: Actor, web_admin: Browser, page: str
) -> None:
    response = await _run_page(client, admin, web_admin, page)
    assert response.status_code == 404, response.text[:500]
    assert "No page " in response.text
    assert "This run has no sellers" in response.text


def test_page_numbers_never_overflow() -> None:
    from app.web.runs import MAX_PAGE, requested_page

    assert requested_page("3") == 3
    assert requested_page("0042") == 42
    assert requested_page("9" * 5000) == MAX_PAGE
    assert requested_page("9" * 20) == MAX_PAGE
    assert requested_page("²") == 1
    assert requested_page("0") == 1
    assert requested_page("") == 1


# --- request bodies ------------------------------------------------------------------------------


async def test_a_body_over_the_limit_is_413_in_plain_words(
    client: httpx.AsyncClient, admin: Actor
) -> None:
    body = json.dumps({"name": "x" * (2 * MiB), "category_ids": ["1"]})
    response = await client.post(
        "/collection/presets",
        content=body,
        headers={**admin.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 413, response.text[:200]
    assert "MAX_REQUEST_BODY_BYTES" in response.json()["detail"]
    assert len(response.content) < 1000


async def test_a_body_over_the_limit_without_a_length_is_413_too(
    client: httpx.AsyncClient, admin: Actor
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "'
        for _ in range(3):
            yield b"x" * MiB
        yield b'", "category_ids": ["1"]}'

    response = await client.post(
        "/collection/presets",
        content=chunks(),
        headers={**admin.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 413, response.text[:200]


async def test_a_web_form_over_the_limit_gets_an_error_page(web_admin: Browser) -> None:
    response = await web_admin.submit(
        "/presets", {"name": "x" * (2 * MiB), "category_ids": "1"}, page="/presets/new"
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == HTML
    assert "Shorten what you typed" in response.text


async def test_a_422_echoes_only_an_excerpt_of_the_input(
    client: httpx.AsyncClient, admin: Actor
) -> None:
    response = await client.post(
        "/collection/presets",
        json={"name": "x" * 500_000, "category_ids": ["1"]},
        headers=admin.headers,
    )
    assert response.status_code == 422
    assert len(response.content) < 2000
    assert response.json()["detail"][0]["input"].endswith("… (500,000 characters)")


@pytest.mark.parametrize("body", [b'\xff\xfe{"name": "x"}', b'{"name": "caf\xe9"}'])
async def test_a_body_that_is_not_utf_8_is_400_in_plain_words(
    client: httpx.AsyncClient, admin: Actor, body: bytes
) -> None:
    response = await client.post(
        "/collection/presets",
        content=body,
        headers={**admin.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json() == {
        "detail": "the request body could not be read: send JSON encoded as UTF-8, with "
        "'Content-Type: application/json'"
    }


# --- logs --------------------------------------------------------------------------------------


def _log_through(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    access = logging.getLogger("app.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    return access, stream


FORGED_PATH = "/health%0A2026-12-02%2014:00:00,000%20ERROR%20app:%20forged%00"


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_a_url_cannot_forge_a_log_line(client: httpx.AsyncClient, log_format: str) -> None:
    formatter: logging.Formatter = (
        JsonFormatter()
        if log_format == "json"
        else TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    access, stream = _log_through(formatter)
    try:
        await client.get(FORGED_PATH)
    finally:
        access.removeHandler(access.handlers[-1])
        access.setLevel(logging.NOTSET)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert "\x00" not in lines[0]
    if log_format == "json":
        assert json.loads(lines[0])["message"].startswith(f"GET {FORGED_PATH} 404")
    else:
        assert f"GET {FORGED_PATH} 404" in lines[0]


def test_text_logs_escape_every_value_and_indent_tracebacks() -> None:
    formatter = TextFormatter("%(levelname)s %(name)s: %(message)s")
    record = logging.LogRecord(
        "app.x", logging.ERROR, __file__, 1, "run %s failed", ("a\nERROR forged",), None
    )
    record.detail = "b\r\nc\x00"
    try:
        raise ValueError("bad\nERROR app: forged")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    text = formatter.format(record)
    lines = text.splitlines()
    assert lines[0] == "ERROR app.x: run a\\x0aERROR forged failed [detail=b\\x0d\\x0ac\\x00]"
    assert all(line.startswith("    ") for line in lines[1:])
    assert not any(re.match(r"ERROR", line) for line in lines[1:])


def test_json_logs_are_one_valid_object_per_line() -> None:
    record = logging.LogRecord(
        "app.x", logging.INFO, __file__, 1, "path %s", ("/a\n\x00\u2028b",), None
    )
    text = JsonFormatter().format(record)
    assert "\n" not in text
    assert json.loads(text)["message"] == "path /a\n\x00\u2028b"


# --- CSV exports -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "title",
    [
        ' =HYPERLINK("http://x.example")',
        "\t=1+1",
        "\x00=cmd|' /C calc'!A0",
        "\u200b@SUM(1)",
        "\u3000+1",
        "\uff1d1+1",  # fullwidth equals sign
        "\ufe62cmd",  # small plus sign
        "\uff0d2",  # fullwidth hyphen-minus
        "\r\n=1",
    ],
)
def test_csv_cells_that_a_spreadsheet_would_run_get_a_leading_quote(title: str) -> None:
    from app.runs.results import csv_chunk

    chunk = csv_chunk([[title, "Gadget - Black", " plain", "x=1"]]).decode()
    cells = next(csv.reader(io.StringIO(chunk, newline="")))
    assert cells == ["'" + title, "Gadget - Black", " plain", "x=1"]


# --- the OpenAPI document ------------------------------------------------------------------------


def test_openapi_documents_the_400s_the_server_answers(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    members = paths["/orgs/current/members"]
    assert "X-Org-Id" in members["get"]["responses"]["400"]["description"]
    assert "cursor" in members["get"]["responses"]["400"]["description"]
    assert "body" in members["post"]["responses"]["400"]["description"]
    assert "413" in members["post"]["responses"]
    detail = members["get"]["responses"]["403"]["content"]["application/json"]["schema"]
    assert detail["required"] == ["detail"]
    org_header = next(p for p in members["get"]["parameters"] if p["name"] == "x-org-id")
    assert org_header["schema"]["format"] == "uuid"


async def test_the_400s_the_openapi_documents_are_the_ones_the_server_answers(
    client: httpx.AsyncClient, admin: Actor
) -> None:
    bad_cursor = await client.get(
        "/orgs/current/members", params={"cursor": "nope"}, headers=admin.headers
    )
    assert bad_cursor.status_code == 400
    bad_org = await client.get(
        "/orgs/current/members", headers={**admin.headers, "X-Org-Id": "acme"}
    )
    assert bad_org.status_code == 400
    bad_body = await client.post(
        "/orgs/current/members",
        content=b'{"email": "\xff"}',
        headers={**admin.headers, "Content-Type": "application/json"},
    )
    assert bad_body.status_code == 400


def test_the_schema_refuses_what_the_server_refuses(app: FastAPI) -> None:
    schemas: dict[str, Any] = app.openapi()["components"]["schemas"]
    name = schemas["PresetCreate"]["properties"]["name"]
    pattern = re.compile(name["pattern"])
    assert pattern.fullmatch("Electronics")
    for text in [*REFUSED_TEXT, "   "]:
        assert not pattern.fullmatch(text)
    update = schemas["ScheduleUpdate"]["properties"]
    assert "anyOf" not in update["enabled"]  # null is refused: the schema does not offer it
    assert {"type": "null"} in update["preset_id"]["anyOf"]  # null detaches the preset
    assert all(re.fullmatch(update["timezone"]["pattern"], zone) for zone in time_zone_names())
    assert not re.fullmatch(update["timezone"]["pattern"], "Europe/Berlin\x00")
    run = schemas["RunCreate"]
    assert [branch["required"] for branch in run["oneOf"]] == [["preset_id"], ["category_ids"]]


async def test_a_405_names_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    response = await client.request("PUT", "/collection/presets")
    assert response.status_code == 405
    assert {"GET", "POST"} <= set(response.headers["allow"].split(", "))
