"""The web UI through the in-process client: sign-in and the session cookie, sign-out,
and CSRF."""

from __future__ import annotations

import hashlib
import re
import uuid

import httpx

from app.auth import issue_token
from app.core.config import Settings
from app.web.rendering import STATIC
from app.web.session import SESSION_COOKIE
from tests.helpers.actors import Actors
from tests.helpers.browser import BrowserFactory, csrf_of, form_context_of
from tests.helpers.web import HTML

# --- sign-in, the session cookie, sign-out ------------------------------------------------------


async def test_pages_send_a_visitor_without_session_to_sign_in(browser: BrowserFactory) -> None:
    anonymous = await browser()
    response = await anonymous.get("/runs?status=running")
    assert response.status_code == 303
    assert response.headers["location"] == "/sign-in?next=%2Fruns%3Fstatus%3Drunning"
    assert (await anonymous.get("/")).headers["location"] == "/sign-in"
    page = await anonymous.get("/sign-in")
    assert page.status_code == 200
    assert page.headers["content-type"] == HTML
    assert '<label for="token">Access token</label>' in page.text
    assert "collection-api token --email" in page.text


async def test_sign_in_keeps_the_token_in_a_strict_httponly_cookie(
    browser: BrowserFactory, actors: Actors
) -> None:
    admin = await actors.admin("Acme")
    visitor = await browser()
    form = await visitor.get("/sign-in?next=/presets")
    response = await visitor.http.post(
        "/sign-in",
        data={
            "token": f"Bearer {admin.token}\n",
            "csrf_token": csrf_of(form.text),
            "next": "/presets",
        },
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/presets"
    session_cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE)
    )
    # A random session token: the JWT is checked once and kept nowhere in the browser.
    assert re.match(rf"{SESSION_COOKIE}=[A-Za-z0-9_-]{{43}};", session_cookie), session_cookie
    assert admin.token not in session_cookie
    assert "HttpOnly" in session_cookie
    assert "SameSite=strict" in session_cookie
    assert "Path=/" in session_cookie
    assert "Secure" not in session_cookie  # plain http (tests); see the https test
    assert "Max-Age=604800" in session_cookie  # WEB_SESSION_MAX_SECONDS (the server decides)

    page = await visitor.get("/presets")
    assert page.status_code == 200
    assert admin.email in page.text
    assert "Signed in as" in page.text  # the flash message, once
    assert "Signed in as" not in (await visitor.get("/presets")).text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp


async def test_cookie_is_secure_over_https(browser: BrowserFactory, actors: Actors) -> None:
    admin = await actors.admin()
    visitor = await browser(base_url="https://testserver")
    response = await visitor.sign_in(admin.token)
    cookies = response.headers.get_list("set-cookie")
    assert any(c.startswith(SESSION_COOKIE) and "Secure" in c for c in cookies), cookies
    page = await visitor.get("/runs")
    assert page.headers["strict-transport-security"] == "max-age=31536000"
    plain = await (await browser(admin)).get("/runs")
    assert "strict-transport-security" not in plain.headers  # only ever sent over https


async def test_sign_in_refuses_bad_tokens_with_the_api_message(
    browser: BrowserFactory, settings: Settings
) -> None:
    visitor = await browser()
    expired = issue_token(settings, user_id=uuid.uuid4(), email="a@example.com", ttl_seconds=-60)
    for token, message in [
        ("not-a-jwt", "This token was not accepted: invalid token: malformed token"),
        (expired, "This token was not accepted: invalid token: token has expired."),
        ("", "Paste a token"),
    ]:
        response = await visitor.sign_in(token)
        assert response.status_code in (400, 401), response.text
        assert response.headers["content-type"] == HTML
        assert message in response.text
        assert 'aria-invalid="true"' in response.text
        assert SESSION_COOKIE not in visitor.http.cookies


async def test_sign_in_form_needs_its_own_csrf_token(
    browser: BrowserFactory, actors: Actors
) -> None:
    """Login CSRF: another site cannot sign a visitor in as someone else."""
    admin = await actors.admin()
    visitor = await browser()
    response = await visitor.http.post("/sign-in", data={"token": admin.token})
    assert response.status_code == 400
    assert "The sign-in form had expired" in response.text
    assert SESSION_COOKIE not in visitor.http.cookies


async def test_sign_in_from_another_site_is_refused(
    browser: BrowserFactory, actors: Actors
) -> None:
    visitor = await browser()
    nonce = csrf_of((await visitor.get("/sign-in")).text)
    for site in ("cross-site", "same-site"):  # a sibling subdomain could plant the cookie
        response = await visitor.http.post(
            "/sign-in",
            data={"token": actors.user().token, "csrf_token": nonce},
            headers={"Sec-Fetch-Site": site},
        )
        assert response.status_code == 403, site
        assert SESSION_COOKIE not in visitor.http.cookies


async def test_sign_in_only_returns_to_local_pages(browser: BrowserFactory, actors: Actors) -> None:
    admin = await actors.admin()
    visitor = await browser()
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        form = await visitor.get("/sign-in")
        response = await visitor.http.post(
            "/sign-in",
            data={"token": admin.token, "csrf_token": csrf_of(form.text), "next": target},
        )
        assert response.headers["location"] == "/", target


async def test_an_ended_session_asks_to_sign_in_again(
    browser: BrowserFactory, settings: Settings
) -> None:
    visitor = await browser()
    visitor.http.cookies.set(
        SESSION_COOKIE,
        issue_token(settings, user_id=uuid.uuid4(), email="b@example.com", ttl_seconds=-60),
    )
    response = await visitor.get("/presets")
    assert response.headers["location"] == "/sign-in?next=%2Fpresets&reason=ended"
    assert "Your session has ended" in (await visitor.get(response.headers["location"])).text
    # The parts of pages that refresh themselves get a plain 401 (the script then redirects).
    fragment = await visitor.get("/runs?fragment=1", headers={"X-Requested-With": "fetch"})
    assert fragment.status_code == 401


async def test_sign_out_clears_the_cookie(browser: BrowserFactory, actors: Actors) -> None:
    admin = await actors.admin()
    signed_in = await browser(admin)
    response = await signed_in.submit("/sign-out")
    assert response.status_code == 303
    assert response.headers["location"] == "/sign-in?signed_out=1"
    cleared = [c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE)]
    assert cleared
    assert "Max-Age=0" in cleared[0]
    assert (await signed_in.get("/runs")).status_code == 303


async def test_the_api_still_wants_a_bearer_token(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    """The cookie is for pages only: the JSON API answers 401 to it as before."""
    admin = await actors.admin()
    signed_in = await browser(admin)
    response = await signed_in.get("/collection/runs")
    assert response.status_code == 401
    assert response.json()["detail"].startswith("missing bearer token")
    assert (await client.get("/collection/runs", headers=admin.headers)).status_code == 200


# --- CSRF ----------------------------------------------------------------------------------------


async def test_state_changing_forms_need_the_session_csrf_token(
    browser: BrowserFactory, actors: Actors
) -> None:
    admin = await actors.admin()
    other = await actors.admin("Other")
    signed_in = await browser(admin)
    someone_else = await browser(other)
    form = {"name": "Electronics", "category_ids": "172282"}

    missing = await signed_in.http.post("/presets", data=form)
    wrong = await signed_in.http.post("/presets", data={**form, "csrf_token": "x" * 43})
    not_ascii = await signed_in.http.post("/presets", data={**form, "csrf_token": "é"})
    # A valid token of another session is no good either: tokens are bound to the cookie.
    stolen = await signed_in.http.post(
        "/presets", data={**form, "csrf_token": await someone_else.csrf()}
    )
    cross_site = await signed_in.http.post(  # even with the right token, if the browser says so
        "/presets",
        data={**form, "csrf_token": await signed_in.csrf()},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    for response in (missing, wrong, not_ascii, stolen, cross_site):
        assert response.status_code == 403
        assert response.headers["content-type"] == HTML
        assert "Request refused" in response.text
    assert (await signed_in.get("/presets")).text.count("<tr>") == 0  # nothing was created

    accepted = await signed_in.submit("/presets", form)
    assert accepted.status_code == 303
    page = await signed_in.get("/presets")
    same_origin = await signed_in.http.post(
        "/presets",
        data={"name": "Two", "category_ids": "1", **form_context_of(page.text)},
        headers={"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"},
    )
    assert same_origin.status_code == 303


async def test_static_files_are_versioned_by_their_content(
    browser: BrowserFactory, actors: Actors
) -> None:
    page = await (await browser(await actors.admin())).get("/runs")
    for name in ("app.css", "app.js"):
        match = re.search(rf'"(/static/{name}\?v=([0-9a-f]{{12}}))"', page.text)
        assert match, name
        digest = hashlib.sha256((STATIC / name).read_bytes()).hexdigest()
        assert digest.startswith(match.group(2))
        served = await (await browser()).get(match.group(1))
        assert served.status_code == 200
        assert served.content == (STATIC / name).read_bytes()


async def test_unknown_pages_are_html_but_api_errors_stay_json(
    browser: BrowserFactory, actors: Actors
) -> None:
    signed_in = await browser(await actors.admin())
    page = {"Accept": "text/html,application/xhtml+xml"}
    for path, status in [("/nowhere", 404), ("/runs/x/y/z", 404), ("/sign-out", 405)]:
        response = await signed_in.get(path, headers=page)
        assert response.status_code == status, path
        assert response.headers["content-type"] == HTML
        assert "Not found" in response.text
    api = await signed_in.get("/collection/nowhere", headers=page)
    assert api.status_code == 404
    assert api.json() == {"detail": "Not Found"}
    assert (await signed_in.get("/orgs", headers=page)).json() == {"detail": "Method Not Allowed"}
    assert (await signed_in.get("/nowhere")).json() == {"detail": "Not Found"}  # not a browser
