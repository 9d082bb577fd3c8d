"""Web sessions on the server (sign-out, everywhere, idle time, removed members), the
one-time sign-in links, and forms that act in the organization they were rendered for."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from fastapi import FastAPI

from app import web_sessions
from app.core.config import Settings
from app.core.database import Database
from app.tables import WebSession
from app.web.session import ORG_COOKIE, SESSION_COOKIE
from tests.helpers.actors import Actor, Actors
from tests.helpers.browser import BrowserFactory, csrf_of, form_context_of
from tests.helpers.settings import make_settings

HTML = "text/html; charset=utf-8"


class Clock:
    """The web pages' time, moved by the test."""

    def __init__(self) -> None:
        self.now = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock(app: FastAPI) -> Iterator[Clock]:
    """A clock the web pages read instead of the real one."""
    real, fake = app.state.web_clock, Clock()
    app.state.web_clock = fake  # (monkeypatch would delete State attributes on undo)
    try:
        yield fake
    finally:
        app.state.web_clock = real


async def _preset_names(client: httpx.AsyncClient, actor: Actor, org_id: object) -> list[str]:
    response = await client.get(
        "/collection/presets", headers={**actor.headers, "X-Org-Id": str(org_id)}
    )
    assert response.status_code == 200, response.text
    return [item["name"] for item in response.json()["items"]]


def _ended(response: httpx.Response) -> bool:
    """Whether the page sent the browser to sign in again because its session ended."""
    return response.status_code == 303 and "reason=ended" in response.headers["location"]


# --- signing out -------------------------------------------------------------------------------


async def test_signing_out_ends_the_session_on_the_server(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin("Acme")
    signed_in = await browser(admin)
    page = await signed_in.get("/presets/new")
    stolen_cookie = signed_in.http.cookies[SESSION_COOKIE]
    old_form = form_context_of(page.text)

    out = await signed_in.submit("/sign-out")
    assert out.headers["location"] == "/sign-in?signed_out=1"

    # A copy of the cookie (another tab, a backup, a thief) signs nobody in any more.
    replay = await browser()
    replay.http.cookies.set(SESSION_COOKIE, stolen_cookie)
    assert _ended(await replay.get("/runs"))
    refused = await replay.http.post(
        "/presets", data={**old_form, "name": "X", "category_ids": "1"}
    )
    assert _ended(refused)
    assert await _preset_names(client, admin, admin.org_id) == []
    notice = await replay.get("/sign-in?reason=ended")
    assert "Your session has ended" in notice.text


async def test_sign_out_everywhere_ends_every_browser_of_the_user_only(
    browser: BrowserFactory, actors: Actors
) -> None:
    admin = await actors.admin("Acme")
    colleague = await actors.member(admin, "member")
    laptop, phone, theirs = await browser(admin), await browser(admin), await browser(colleague)

    account = await laptop.get("/account")
    assert account.status_code == 200
    assert account.headers["content-type"] == HTML
    assert admin.email in account.text
    assert account.text.count("<tr>") == 1 + 2  # the header row, then two sessions
    assert account.text.count('<span class="badge">This browser</span>') == 1
    assert 'action="/sign-out/everywhere"' in account.text
    assert "8 hours unused, or 7 days after signing in" in account.text

    out = await laptop.submit("/sign-out/everywhere", page="/account")
    assert out.status_code == 303
    assert out.headers["location"] == "/sign-in?signed_out=everywhere"
    assert "signed out in every browser" in (await laptop.get(out.headers["location"])).text
    assert _ended(await phone.get("/runs"))
    assert (await theirs.get("/runs")).status_code == 200


async def test_the_sign_out_form_is_in_every_signed_in_page_header(
    browser: BrowserFactory, actors: Actors
) -> None:
    admin = await actors.admin("Acme")
    with_org = await browser(admin)
    without_org = await browser(actors.user())
    for visitor, path in [
        (with_org, "/runs"),
        (with_org, "/account"),
        (with_org, f"/runs/{uuid.uuid4()}"),  # an error page
        (without_org, "/runs"),  # the welcome page
        (without_org, "/account"),
    ]:
        page = await visitor.get(path)
        header = page.text.split("</header>")[0]
        assert 'action="/sign-out"' in header, path
        assert 'href="/account"' in header, path
    signed_out = await (await browser()).get("/sign-in")
    assert 'action="/sign-out"' not in signed_out.text


# --- idle time and maximum age -------------------------------------------------------------------


async def test_an_idle_session_ends_and_an_active_one_lasts_until_its_maximum_age(
    browser: BrowserFactory, actors: Actors, clock: Clock, settings: Settings, database: Database
) -> None:
    idle = settings.web_session_idle_seconds
    admin = await actors.admin("Acme")
    active, idler = await browser(admin), await browser(admin)

    # Used every (idle - 1 minute): never idle; ended at its maximum age all the same.
    steps = settings.web_session_max_seconds // (idle - 60)
    for _ in range(steps):
        clock.advance(seconds=idle - 60)
        assert (await active.get("/runs")).status_code == 200
    assert _ended(await idler.get("/runs"))
    clock.advance(seconds=settings.web_session_max_seconds - steps * (idle - 60))
    assert _ended(await active.get("/runs"))

    fresh = await browser(admin)  # signing in again works, of course
    assert (await fresh.get("/runs")).status_code == 200
    async with database.read() as session:  # and forgets the sessions that are over
        assert await session.scalar(sa.select(sa.func.count()).select_from(WebSession)) == 1
    clock.advance(seconds=idle)
    assert _ended(await fresh.get("/runs"))


async def test_last_seen_is_written_at_most_once_a_minute(
    browser: BrowserFactory, actors: Actors, clock: Clock, database: Database
) -> None:
    admin = await actors.admin("Acme")
    visitor = await browser(admin)
    signed_in_at = clock.now

    async def last_seen() -> datetime:
        async with database.read() as session:
            value = await session.scalar(
                sa.select(WebSession.last_seen_at).where(WebSession.revoked_at.is_(None))
            )
        assert value is not None
        return value

    for _ in range(3):
        clock.advance(seconds=20)
        assert (await visitor.get("/runs")).status_code == 200
    assert await last_seen() == signed_in_at  # 60 s are not over yet: no write
    clock.advance(seconds=1)
    await visitor.get("/runs")
    assert await last_seen() == clock.now


# --- a removed member ------------------------------------------------------------------------


async def test_a_removed_member_loses_the_organization_at_once(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    """Memberships are read on every request: removal takes effect on the next one. The
    session itself is the user's (they may belong to other organizations), so it stays."""
    admin = await actors.admin("Acme")
    member = await actors.member(admin, "member")
    as_member = await browser(member)
    form = await as_member.get("/presets/new")
    assert "Acme · member" in form.text

    removed = await client.delete(f"/orgs/current/members/{member.user_id}", headers=admin.headers)
    assert removed.status_code == 204, removed.text

    page = await as_member.get("/presets")
    assert "you are not a member of any organization yet" in page.text
    refused = await as_member.http.post(
        "/presets", data={**form_context_of(form.text), "name": "Late", "category_ids": "1"}
    )
    assert refused.status_code == 403
    assert f"This form was for organization {admin.org_id}" in refused.text
    assert "nothing was changed" in refused.text
    assert await _preset_names(client, admin, admin.org_id) == []
    assert (await as_member.get("/account")).status_code == 200


# --- forms act in the organization they were rendered for -----------------------------------


async def test_a_form_acts_in_the_organization_its_page_showed(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    """The issue's case: the page showed Zeta (no org cookie yet); meanwhile the user was
    added to Aardvark, which is first by name. The preset goes to Zeta."""
    zeta_admin = await actors.admin("Zeta")
    aardvark_admin = await actors.admin("Aardvark")
    user = await actors.member(zeta_admin, "member")
    visitor = await browser(user)
    visitor.http.cookies.delete(ORG_COOKIE)
    form = await visitor.get("/presets/new")
    assert "Zeta · member" in form.text
    visitor.http.cookies.delete(ORG_COOKIE)  # as a browser that never kept one
    added = await client.post(
        "/orgs/current/members",
        json={"email": user.email, "role": "member"},
        headers=aardvark_admin.headers,
    )
    assert added.status_code == 201, added.text

    created = await visitor.http.post(
        "/presets",
        data={**form_context_of(form.text), "name": "Cameras", "category_ids": "502394"},
    )
    assert created.status_code == 303, created.text
    assert await _preset_names(client, user, zeta_admin.org_id) == ["Cameras"]
    assert await _preset_names(client, user, aardvark_admin.org_id) == []
    # The next page shows the organization the form changed, with the new preset in it.
    assert visitor.http.cookies[ORG_COOKIE] == str(zeta_admin.org_id)
    listing = await visitor.get(created.headers["location"])
    assert "Cameras" in listing.text
    assert "Preset Cameras created" in listing.text


async def test_a_form_that_names_no_organization_or_a_foreign_one_is_refused(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin("Acme")
    stranger = await actors.admin("Elsewhere")
    visitor = await browser(admin)
    html = (await visitor.get("/presets")).text
    preset = {"name": "Cameras", "category_ids": "502394"}

    missing = await visitor.http.post("/presets", data={"csrf_token": csrf_of(html), **preset})
    assert missing.status_code == 400
    assert missing.headers["content-type"] == HTML
    assert "This form does not say which organization it is for" in missing.text
    garbled = await visitor.http.post(
        "/presets", data={**form_context_of(html), "org_id": "Acme", **preset}
    )
    assert garbled.status_code == 400
    foreign = await visitor.http.post(
        "/presets", data={**form_context_of(html), "org_id": str(stranger.org_id), **preset}
    )
    assert foreign.status_code == 403
    assert f"This form was for organization {stranger.org_id}" in foreign.text
    assert "Elsewhere" not in foreign.text.split("</header>")[1]  # another tenant's name
    assert await _preset_names(client, admin, admin.org_id) == []
    assert await _preset_names(client, stranger, stranger.org_id) == []


async def test_a_form_is_checked_against_the_role_in_its_own_organization(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    """Admin of Alpha, viewer in Beta, acting in Alpha: a form rendered for Beta is
    refused, and says the role it was refused for is the one in Beta."""
    alpha_admin = await actors.admin("Alpha")
    beta_admin = await actors.admin("Beta")
    await client.get("/me", headers=alpha_admin.headers)
    added = await client.post(
        "/orgs/current/members",
        json={"email": alpha_admin.email, "role": "viewer"},
        headers=beta_admin.headers,
    )
    assert added.status_code == 201, added.text
    visitor = await browser(alpha_admin)
    html = (await visitor.get("/presets")).text
    assert visitor.http.cookies[ORG_COOKIE] == str(alpha_admin.org_id)  # Alpha, first by name

    as_beta = {**form_context_of(html), "org_id": str(beta_admin.org_id)}
    refused = await visitor.http.post(
        "/presets", data={**as_beta, "name": "Cameras", "category_ids": "1"}
    )
    assert refused.status_code == 403
    assert "Your role in Beta is viewer" in refused.text
    assert await _preset_names(client, beta_admin, beta_admin.org_id) == []
    assert visitor.http.cookies[ORG_COOKIE] == str(alpha_admin.org_id)  # refusals keep it


async def test_every_state_changing_form_carries_its_organization(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin("Acme")
    member = await actors.member(admin, "member")
    preset = await client.post(
        "/collection/presets",
        json={"name": "Cameras", "category_ids": ["1"]},
        headers=admin.headers,
    )
    run = await client.post(
        "/collection/runs", json={"preset_id": preset.json()["id"]}, headers=admin.headers
    )
    await client.post(
        "/orgs/current/members",
        json={"email": "invited@example.com", "role": "viewer"},
        headers=admin.headers,
    )
    visitor = await browser(admin)
    hidden = f'<input type="hidden" name="org_id" value="{admin.org_id}">'
    pages = [
        "/presets",
        f"/presets/{preset.json()['id']}",
        "/runs/new",
        f"/runs/{run.json()['id']}",
        "/members",
        "/schedule",
    ]
    forms = 0
    for path in pages:
        html = (await visitor.get(path)).text
        main = html.split("</header>")[1]
        for form in re.findall(r'<form method="post".*?</form>', main, flags=re.DOTALL):
            forms += 1
            assert hidden in form, (path, form)
    assert forms >= 10
    assert member.email in (await visitor.get("/members")).text


async def test_scripts_requests_act_in_the_page_organization_without_moving_the_cookie(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin("Alpha")
    beta = await client.post("/orgs", json={"name": "Beta"}, headers=admin.headers)
    beta_id = beta.json()["id"]
    run = await client.post(
        "/collection/runs",
        json={"category_ids": ["1"]},
        headers={**admin.headers, "X-Org-Id": beta_id},
    )
    visitor = await browser(admin)
    assert (await visitor.get("/runs")).status_code == 200  # Alpha, first by name, kept
    page = await visitor.get(f"/runs/{run.json()['id']}")
    assert page.status_code == 404  # a run of Beta
    assert f'<meta name="collection-org" content="{admin.org_id}">' in page.text

    live = await visitor.get(
        f"/runs/{run.json()['id']}/live",
        headers={"X-Requested-With": "fetch", "X-Org-Id": beta_id},
    )
    assert live.status_code == 200
    assert "set-cookie" not in live.headers
    assert visitor.http.cookies[ORG_COOKIE] == str(admin.org_id)
    foreign = await visitor.get(
        "/runs?fragment=1", headers={"X-Requested-With": "fetch", "X-Org-Id": str(uuid.uuid4())}
    )
    assert foreign.status_code == 403
    app_js = (await visitor.get("/static/app.js")).text
    assert 'FETCH_HEADERS["X-Org-Id"]' in app_js


# --- one-time sign-in links ----------------------------------------------------------------------


async def _issue(database: Database, email: str, now: datetime) -> str:
    async with database.transaction() as session:
        return await web_sessions.issue_sign_in_link(session, email=email, now=now)


async def test_a_sign_in_link_works_once_and_says_why_not_afterwards(
    browser: BrowserFactory, database: Database, clock: Clock
) -> None:
    used, stale = (
        await _issue(database, "ana@example.com", clock.now),
        await _issue(database, "ana@example.com", clock.now),
    )
    visitor = await browser()
    response = await visitor.get(f"/sign-in/link?code={used}")
    assert response.status_code == 303
    assert "Signed in as ana@example.com" in (await visitor.get("/runs")).text

    clock.advance(minutes=14)
    again = await (await browser()).get(f"/sign-in/link?code={used}")
    assert again.status_code == 400
    assert "This sign-in link was already used" in again.text
    assert "collection-api sign-in-link" in again.text
    clock.advance(minutes=1)
    expired = await (await browser()).get(f"/sign-in/link?code={stale}")
    assert expired.status_code == 400
    assert "This sign-in link has expired" in expired.text
    forged = await (await browser()).get("/sign-in/link?code=forged")
    assert "This sign-in link is not known here" in forged.text
    assert SESSION_COOKIE not in forged.headers.get("set-cookie", "")


async def test_two_browsers_opening_one_link_at_once_sign_in_once(
    browser: BrowserFactory, database: Database
) -> None:
    code = await _issue(database, "ana@example.com", datetime.now(UTC))
    visitors = [await browser() for _ in range(4)]
    responses = await asyncio.gather(*(v.get(f"/sign-in/link?code={code}") for v in visitors))
    assert sorted(r.status_code for r in responses) == [303, 400, 400, 400]


def _cli(settings: Settings, *args: str) -> str:
    """Run `collection-api` against the suite's database, as a separate command would."""
    from app.cli import main

    env = {
        "DATABASE_URL": settings.effective_database_url,
        "DATA_DIR": str(settings.data_dir),
        "JWT_SECRET": settings.jwt_secret,
    }
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.output


def _link_path(output: str) -> str:
    match = re.search(r"http://127\.0\.0\.1:8000(/sign-in/link\?code=\S+)", output)
    assert match, output
    return match.group(1)


async def test_the_local_operator_gets_back_in_after_signing_out(
    browser: BrowserFactory, settings: Settings
) -> None:
    """Nobody administers anything yet: the link opens the local operator's account. After
    signing out, `collection-api sign-in-link` (a separate command) gives a new link, and
    `collection-api token` accepts the operator's address."""
    first = await asyncio.to_thread(_cli, settings, "sign-in-link")
    assert "to sign in as admin@localhost (works once, for 15 minutes" in first
    visitor = await browser()
    await visitor.get(_link_path(first))
    welcome = await visitor.get("/runs")
    assert "admin@localhost" in welcome.text
    assert "Create organization" in welcome.text
    assert "collection-api sign-in-link" in welcome.text
    assert "Ask an admin" not in welcome.text
    await visitor.submit("/sign-out")
    assert "collection-api sign-in-link" in (await visitor.get("/sign-in")).text

    second = await asyncio.to_thread(_cli, settings, "sign-in-link")
    assert (await visitor.get(_link_path(second))).status_code == 303
    assert "admin@localhost" in (await visitor.get("/runs")).text
    token = (await asyncio.to_thread(_cli, settings, "token", "--email", "admin@localhost")).strip()
    pasted = await browser(Actor(uuid.uuid4(), "admin@localhost", token))
    assert "admin@localhost" in (await pasted.get("/runs")).text


async def test_a_sign_in_link_for_an_email_and_for_the_first_admin(
    browser: BrowserFactory, actors: Actors, settings: Settings
) -> None:
    admin = await actors.admin("First")
    member = await actors.member(admin, "viewer")
    as_operator = await asyncio.to_thread(_cli, settings, "sign-in-link")
    assert f"to sign in as {admin.email}" in as_operator
    for output, email in [
        (as_operator, admin.email),
        (
            await asyncio.to_thread(_cli, settings, "sign-in-link", "--email", member.email),
            member.email,
        ),
    ]:
        visitor = await browser()
        await visitor.get(_link_path(output))
        page = await visitor.get("/runs")
        assert f">{email}</a>" in page.text.split("</header>")[0]
        assert "First · " in page.text

    newcomer = await asyncio.to_thread(
        _cli, settings, "sign-in-link", "--email", "New@Example.com", "--url", "http://x.test/"
    )
    assert "http://x.test/sign-in/link?code=" in newcomer
    code = re.search(r"code=(\S+)", newcomer)
    assert code
    visitor = await browser()
    await visitor.get(f"/sign-in/link?code={code.group(1)}")
    assert "new@example.com" in (await visitor.get("/runs")).text


@pytest.mark.parametrize(
    ("jwt_secret", "jwks_url"),
    [(None, None), ("s" * 40, None), (None, "https://idp.example/.well-known/jwks.json")],
)
def test_serve_prints_a_sign_in_link_only_in_the_embedded_default(
    jwt_secret: str | None, jwks_url: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app import cli
    from app.serving import Server

    served: list[FastAPI] = []
    monkeypatch.setattr(Server, "run", lambda server: served.append(server.config.app))
    monkeypatch.chdir(tmp_path)  # no .env here
    env = {"DATA_DIR": str(tmp_path / "data"), "JWT_SECRET": jwt_secret, "JWT_JWKS_URL": jwks_url}
    every_interface = "0.0.0.0"  # noqa: S104 (not bound: Server.run is replaced)
    result = CliRunner().invoke(
        cli.main, ["serve", "--host", every_interface, "--port", "8123"], env=env
    )
    assert result.exit_code == 0, result.output
    assert len(served) == 1
    link = re.search(r"http://127\.0\.0\.1:8123/sign-in/link\?code=(\S+)", result.output)
    if jwt_secret or jwks_url:  # users sign in with the identity provider's tokens
        assert link is None
        return
    assert link, result.output
    assert "to sign in as admin@localhost (works once, for 15 minutes" in result.output

    async def redeem(code: str) -> str:
        database = Database.from_settings(make_settings(data_dir=tmp_path / "data"))
        try:
            async with database.transaction() as session:
                return await web_sessions.redeem_sign_in_link(
                    session, code=code, now=datetime.now(UTC)
                )
        finally:
            await database.dispose()

    assert asyncio.run(redeem(link.group(1))) == "admin@localhost"
