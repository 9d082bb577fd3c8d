"""The web UI through the in-process client: sign-in and the session cookie, CSRF,
permissions enforced by the server, tenant isolation, and each page's forms."""

from __future__ import annotations

import csv
import hashlib
import io
import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app.auth import issue_token
from app.core.clock import utcnow
from app.core.config import Settings
from app.tables import CollectionRun, RunStatus
from app.web.rendering import STATIC
from app.web.session import ORG_COOKIE, SESSION_COOKIE
from tests.helpers.actors import Actors
from tests.helpers.browser import BrowserFactory, csrf_of, form_context_of
from tests.helpers.web import completed_run, make_preset, wait_until

HTML = "text/html; charset=utf-8"


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


# --- permissions and tenancy ---------------------------------------------------------------------


async def test_schedule_page_is_for_admins_only(browser: BrowserFactory, actors: Actors) -> None:
    admin = await actors.admin()
    member = await actors.member(admin, "member")
    as_admin = await browser(admin)
    as_member = await browser(member)

    assert 'href="/schedule"' in (await as_admin.get("/runs")).text
    assert (await as_admin.get("/schedule")).status_code == 200

    runs = await as_member.get("/runs")
    assert runs.status_code == 200
    assert 'href="/schedule"' not in runs.text  # the link is hidden...
    page = await as_member.get("/schedule")  # ...and the page itself refused
    assert page.status_code == 403
    assert page.headers["content-type"] == HTML
    assert "cannot manage the schedule (permission &#39;admin.automation&#39;)" in page.text
    for path in ("/schedule", "/schedule/run-now"):
        refused = await as_member.submit(path, {"cron_expression": "@daily", "timezone": "UTC"})
        assert refused.status_code == 403
    preview = await as_member.get("/schedule/preview?cron_expression=@daily&timezone=UTC")
    assert preview.status_code == 403


async def test_admins_add_members_and_invite_people_from_the_members_page(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin()
    known = actors.user("known@example.com")
    await client.get("/me", headers=known.headers)  # signed in once, so added at once
    as_admin = await browser(admin)

    page = await as_admin.get("/members")
    assert page.status_code == 200
    assert admin.email in page.text
    assert "No invitation is waiting" in page.text

    added = await as_admin.submit("/members", {"email": "Known@Example.com", "role": "viewer"})
    assert added.status_code == 303
    page = await as_admin.get("/members")
    assert "known@example.com added to Acme as viewer." in page.text
    invited = await as_admin.submit("/members", {"email": "new@example.com", "role": "admin"})
    assert invited.status_code == 303
    page = await as_admin.get("/members")
    assert "new@example.com is invited as admin" in page.text
    listed = await client.get("/orgs/current/invitations", headers=admin.headers)
    assert [(i["email"], i["role"]) for i in listed.json()["items"]] == [
        ("new@example.com", "admin")
    ]
    as_known = await browser(known)
    assert 'href="/members"' in (await as_known.get("/runs")).text

    # Mistakes come back at the field, with what was typed, and change nothing.
    for data, status, message in [
        ({"email": "not-an-email", "role": "member"}, 400, "not a valid email address"),
        ({"email": "x@example.com", "role": "owner"}, 400, "&#39;admin&#39;, &#39;member&#39;"),
        ({"email": "known@example.com", "role": "member"}, 409, "already a member"),
        ({"email": "new@example.com", "role": "member"}, 409, "already invited"),
    ]:
        refused = await as_admin.submit("/members", data)
        assert refused.status_code == status, data
        assert refused.headers["content-type"] == HTML
        field = "role" if data["role"] == "owner" else "email"
        error = re.search(rf'<p class="field-error" id="{field}-error" >([^<]*)</p>', refused.text)
        assert error, refused.text
        assert message in error.group(1)
        assert f'value="{data["email"]}"' in refused.text
    members = await client.get("/orgs/current/members", headers=admin.headers)
    assert sorted(m["email"] for m in members.json()["items"]) == sorted(
        [admin.email, "known@example.com"]
    )


async def test_admins_change_roles_remove_members_and_withdraw_invitations(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin()
    member = await actors.member(admin, "member")
    await client.post(
        "/orgs/current/members",
        json={"email": "later@example.com", "role": "viewer"},
        headers=admin.headers,
    )
    as_admin = await browser(admin)
    page = (await as_admin.get("/members")).text
    assert f'action="/members/{member.user_id}/role"' in page
    assert f'action="/members/{member.user_id}/remove"' in page
    assert 'value="later@example.com"' in page  # the invitation's withdraw form

    changed = await as_admin.submit(
        f"/members/{member.user_id}/role", {"role": "viewer"}, page="/members"
    )
    assert changed.status_code == 303
    assert f"{member.email} is now viewer." in (await as_admin.get("/members")).text
    me = (await client.get("/me", headers=member.headers)).json()
    assert [m["role"] for m in me["memberships"]] == ["viewer"]

    # The last admin stays: the refusal comes back as a message on the page.
    refused = await as_admin.submit(
        f"/members/{admin.user_id}/role", {"role": "member"}, page="/members"
    )
    assert refused.status_code == 303
    page = (await as_admin.get("/members")).text
    assert "Role not changed: this is the organization&#39;s only admin" in page
    bad_role = await as_admin.submit(
        f"/members/{member.user_id}/role", {"role": "owner"}, page="/members"
    )
    assert bad_role.status_code == 303
    refusal = "Role not changed: choose one of &#39;admin&#39;, &#39;member&#39; or &#39;viewer"
    assert refusal in (await as_admin.get("/members")).text

    withdrawn = await as_admin.submit(
        "/members/invitations/revoke", {"email": "later@example.com"}, page="/members"
    )
    assert withdrawn.status_code == 303
    page = (await as_admin.get("/members")).text
    assert "The invitation of later@example.com is withdrawn." in page
    assert "No invitation is waiting" in page

    removed = await as_admin.submit(f"/members/{member.user_id}/remove", page="/members")
    assert removed.status_code == 303
    assert "their runs and presets stay" in (await as_admin.get("/members")).text
    assert (await client.get("/me", headers=member.headers)).json()["memberships"] == []
    for path in (f"/members/{member.user_id}/remove", "/members/not-a-uuid/remove"):
        gone = await as_admin.submit(path, page="/members")
        assert gone.status_code == 404, path
        assert gone.headers["content-type"] == HTML


async def test_another_organizations_members_cannot_be_touched(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    owner = await actors.admin("Owner")
    their_member = await actors.member(owner, "member")
    await client.post(
        "/orgs/current/members", json={"email": "their@example.com"}, headers=owner.headers
    )
    as_outsider = await browser(await actors.admin("Outsider"))
    for path, data in [
        (f"/members/{their_member.user_id}/role", {"role": "viewer"}),
        (f"/members/{their_member.user_id}/remove", {}),
        (f"/members/{owner.user_id}/remove", {}),
        ("/members/invitations/revoke", {"email": "their@example.com"}),
    ]:
        response = await as_outsider.submit(path, data, page="/members")
        assert response.status_code == 404, path
    members = (await client.get("/orgs/current/members", headers=owner.headers)).json()["items"]
    assert {m["email"]: m["role"] for m in members} == {
        owner.email: "admin",
        their_member.email: "member",
    }
    invites = (await client.get("/orgs/current/invitations", headers=owner.headers)).json()
    assert [i["email"] for i in invites["items"]] == ["their@example.com"]


async def test_a_long_invitation_list_says_it_is_cut_short(
    browser: BrowserFactory,
    actors: Actors,
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.web import members

    admin = await actors.admin()
    for name in ("a", "b", "c"):
        body = {"email": f"{name}@example.com"}
        await client.post("/orgs/current/members", json=body, headers=admin.headers)
    monkeypatch.setattr(members, "INVITATIONS_SHOWN", 2)
    page = (await (await browser(admin)).get("/members")).text
    assert page.count("/members/invitations/revoke") == 2
    assert "The 2 newest invitations are shown" in page


async def test_members_see_the_members_but_cannot_add_any(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin()
    outsider = await actors.admin("Elsewhere")
    member = await actors.member(admin, "member")
    as_member = await browser(member)

    page = await as_member.get("/members")
    assert page.status_code == 200
    assert admin.email in page.text
    assert f"{member.email} <span" in page.text  # marked as "(you)"
    assert 'action="/members"' not in page.text
    assert "Invitations" not in page.text
    refused = await as_member.submit("/members", {"email": "friend@example.com"})
    assert refused.status_code == 403
    assert "cannot manage members (permission &#39;members.manage&#39;)" in refused.text
    assert f'action="/members/{admin.user_id}/remove"' not in page.text
    for path, data in [
        (f"/members/{admin.user_id}/role", {"role": "viewer"}),
        (f"/members/{admin.user_id}/remove", {}),
        (f"/members/{member.user_id}/role", {"role": "admin"}),
    ]:
        assert (await as_member.submit(path, data, page="/members")).status_code == 403, path
    assert outsider.email not in page.text  # another organization's people stay unseen
    invitations = await client.get("/orgs/current/invitations", headers=admin.headers)
    assert invitations.json()["items"] == []


async def test_viewers_see_but_cannot_change(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin()
    viewer = await actors.member(admin, "viewer")
    preset_id = await make_preset(client, admin)
    run = await client.post(
        "/collection/runs", json={"preset_id": preset_id}, headers=admin.headers
    )
    as_viewer = await browser(viewer)

    presets = await as_viewer.get("/presets")
    assert "Electronics" in presets.text
    assert "New preset" not in presets.text
    assert f"/presets/{preset_id}/delete" not in presets.text
    detail = await as_viewer.get(f"/runs/{run.json()['id']}")
    assert detail.status_code == 200
    assert "/start" not in detail.text
    assert "/cancel" not in detail.text

    for path, data in [  # ...and the server refuses the requests all the same
        ("/presets", {"name": "X", "category_ids": "1"}),
        (f"/presets/{preset_id}/delete", {}),
        ("/runs", {"preset_id": preset_id}),
        (f"/runs/{run.json()['id']}/start", {}),
        (f"/runs/{run.json()['id']}/cancel", {}),
    ]:
        response = await as_viewer.submit(path, data)
        assert response.status_code == 403, path
    assert (await as_viewer.get("/presets/new")).status_code == 403
    assert (await as_viewer.get("/runs/new")).status_code == 403
    still = await client.get(f"/collection/runs/{run.json()['id']}", headers=admin.headers)
    assert still.json()["status"] == "pending"


async def test_another_organizations_run_and_preset_are_not_found(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    owner = await actors.admin("Owner")
    outsider = await actors.admin("Outsider")
    preset_id = await make_preset(client, owner, "Owner's secret")
    run_id = (
        await client.post("/collection/runs", json={"preset_id": preset_id}, headers=owner.headers)
    ).json()["id"]
    as_outsider = await browser(outsider)

    for path in (
        f"/runs/{run_id}",
        f"/runs/{run_id}/live",
        f"/runs/{run_id}/export.csv",
        f"/presets/{preset_id}",
        "/runs/not-a-uuid",
        f"/runs/{uuid.uuid4()}",
    ):
        response = await as_outsider.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == HTML
        assert "Not found" in response.text
        assert "secret" not in response.text
    for path in (f"/runs/{run_id}/cancel", f"/presets/{preset_id}/delete"):
        assert (await as_outsider.submit(path)).status_code == 404
    assert "secret" not in (await as_outsider.get("/presets")).text
    assert run_id not in (await as_outsider.get("/runs")).text
    run = await client.get(f"/collection/runs/{run_id}", headers=owner.headers)
    assert run.json()["status"] == "pending"


async def test_org_switcher_with_several_memberships(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin("Alpha")
    beta = await client.post("/orgs", json={"name": "Beta"}, headers=admin.headers)
    beta_id = beta.json()["id"]
    admin.extra_headers["X-Org-Id"] = str(admin.org_id)
    await make_preset(client, admin, "Alpha preset")
    signed_in = await browser(admin)

    page = await signed_in.get("/presets")
    assert '<select id="org-switch" name="org_id">' in page.text
    assert "Alpha (admin)" in page.text
    assert "Beta (admin)" in page.text
    assert "Alpha preset" in page.text  # the first by name

    switched = await signed_in.submit(
        "/organization", {"org_id": beta_id, "next": f"/runs/{uuid.uuid4()}"}
    )
    assert switched.status_code == 303
    assert switched.headers["location"] == "/runs"  # one org's page is not found in another
    assert signed_in.http.cookies[ORG_COOKIE] == beta_id
    assert "Alpha preset" not in (await signed_in.get("/presets")).text

    refused = await signed_in.submit("/organization", {"org_id": str(uuid.uuid4())})
    assert refused.status_code == 403


async def test_without_organization_a_user_can_create_one(
    browser: BrowserFactory, actors: Actors
) -> None:
    loner = actors.user()
    visitor = await browser(loner)
    page = await visitor.get("/runs")
    assert page.status_code == 200
    assert "you are not a member of any organization yet" in page.text
    empty = await visitor.submit("/organization/new", {"name": "  "}, page="/runs")
    assert empty.status_code == 400
    assert "String should have at least 1 character" in empty.text
    created = await visitor.submit("/organization/new", {"name": "Loners"}, page="/runs")
    assert created.headers["location"] == "/presets"
    presets = await visitor.get("/presets")
    assert "Loners · admin" in presets.text
    assert "No presets yet" in presets.text


# --- presets -------------------------------------------------------------------------------------


async def test_presets_show_the_api_messages_at_the_field(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin()
    signed_in = await browser(admin)
    assert "No presets yet" in (await signed_in.get("/presets")).text

    bad = await signed_in.submit(
        "/presets", {"name": "Electronics", "category_ids": "172282, abc"}, page="/presets/new"
    )
    assert bad.status_code == 400
    assert (
        '<p class="field-error" id="category_ids-error" >'
        "must be a numeric category ID (digits only), got &#39;abc&#39;</p>"
    ) in bad.text
    assert 'id="category_ids" name="category_ids"' in bad.text
    assert "172282, abc</textarea>" in bad.text  # what was typed is kept
    assert '"detail"' not in bad.text

    created = await signed_in.submit(
        "/presets", {"name": "Electronics", "category_ids": "172282\n541966 172282"}
    )
    assert created.status_code == 303
    listing = await signed_in.get("/presets")
    assert "Preset Electronics created with 2 categories." in listing.text

    taken = await signed_in.submit("/presets", {"name": "Electronics", "category_ids": "1"})
    assert taken.status_code == 409
    assert "a preset named &#39;Electronics&#39; already exists; choose another name" in taken.text

    api_presets = (await client.get("/collection/presets", headers=admin.headers)).json()
    preset = api_presets["items"][0]
    assert preset["category_ids"] == ["172282", "541966"]

    edit = await signed_in.get(f"/presets/{preset['id']}")
    assert "172282\n541966</textarea>" in edit.text
    empty = await signed_in.submit(
        f"/presets/{preset['id']}", {"name": "Electronics", "category_ids": ""}
    )
    assert empty.status_code == 400
    assert "must list at least one category ID" in empty.text
    saved = await signed_in.submit(
        f"/presets/{preset['id']}", {"name": "Gadgets", "category_ids": "1,2,3"}
    )
    assert saved.status_code == 303
    after = await client.get(f"/collection/presets/{preset['id']}", headers=admin.headers)
    assert after.json()["name"] == "Gadgets"
    assert after.json()["category_ids"] == ["1", "2", "3"]

    deleted = await signed_in.submit(f"/presets/{preset['id']}/delete")
    assert deleted.status_code == 303
    assert "Preset Gadgets deleted." in (await signed_in.get("/presets")).text
    gone = await client.get(f"/collection/presets/{preset['id']}", headers=admin.headers)
    assert gone.status_code == 404


# --- runs ---------------------------------------------------------------------------------------


async def test_runs_list_empty_states_say_what_to_do(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin()
    signed_in = await browser(admin)
    page = await signed_in.get("/runs")
    assert "No runs yet" in page.text
    assert 'href="/presets/new">Create a preset' in page.text
    await make_preset(client, admin)
    page = await signed_in.get("/runs")
    assert 'href="/runs/new">Start a run' in page.text
    assert "No completed runs" in (await signed_in.get("/runs?status=completed")).text


async def test_a_run_from_a_preset_with_live_progress_and_results(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin()
    preset_id = await make_preset(client, admin)
    signed_in = await browser(admin)

    form = await signed_in.get(f"/runs/new?preset_id={preset_id}")
    assert f'<option value="{preset_id}" selected>' in form.text
    too_big = await signed_in.submit(
        "/runs", {"preset_id": preset_id, "products_per_category": "500"}, page="/runs/new"
    )
    assert too_big.status_code == 400
    assert "use a number no larger than 100" in too_big.text

    created = await signed_in.submit(
        "/runs",
        {"preset_id": preset_id, "name": "Web run", "products_per_category": "5", "start": "on"},
    )
    assert created.status_code == 303
    run_id = created.headers["location"].removeprefix("/runs/")
    page = await signed_in.get(f"/runs/{run_id}")
    assert "Run started" in page.text
    assert "Web run" in page.text

    await wait_until(client, admin, run_id, "completed")
    live = await signed_in.get(f"/runs/{run_id}/live")
    assert live.status_code == 200
    assert "data-live-url" not in live.text  # nothing changes any more: polling stops
    assert "data-finished" in live.text
    assert "Completed" in live.text

    page = await signed_in.get(f"/runs/{run_id}")
    api_sellers = (
        await client.get(f"/collection/runs/{run_id}/sellers?limit=25", headers=admin.headers)
    ).json()["items"]
    shown = re.findall(r'<td class="seller">([^<]+)</td>', page.text)
    assert shown == [s["username"] for s in api_sellers]  # the API's ranking, page one
    assert f'href="/runs/{run_id}/export.csv?kind=sellers"' in page.text
    assert "No earlier completed run of this preset to compare with" in page.text

    export = await signed_in.get(f"/runs/{run_id}/export.csv?kind=sellers")
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(export.text)))
    assert rows[0][:2] == ["rank", "seller_username"]
    assert rows[1][1] == api_sellers[0]["username"]

    duplicate = await signed_in.submit("/runs", {"preset_id": preset_id, "start": "on"})
    assert duplicate.status_code == 303  # the first one is finished: a second may run
    second = duplicate.headers["location"]
    busy = await signed_in.submit("/runs", {"preset_id": preset_id})
    if busy.status_code == 409:  # the second is still active
        assert "runs one collection at a time" in busy.text
    await wait_until(client, admin, second.removeprefix("/runs/"), "completed")


async def test_sellers_sort_paginate_and_mark_new_sellers(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin()
    # Two runs of one preset, which gained categories in between: new sellers to mark.
    preset = await client.post(
        "/collection/presets", json={"name": "Grows", "category_ids": ["11"]}, headers=admin.headers
    )
    preset_id = preset.json()["id"]
    await completed_run(client, admin, preset_id=preset_id)
    await client.patch(
        f"/collection/presets/{preset_id}",
        json={"category_ids": ["11", "12", "13"]},
        headers=admin.headers,
    )
    run_id = await completed_run(client, admin, preset_id=preset_id)
    signed_in = await browser(admin)

    def sellers_of(html: str) -> list[str]:
        return re.findall(r'<td class="seller">([^<]+)</td>', html)

    page = await signed_in.get(f"/runs/{run_id}")
    assert '<span class="badge new">New</span>' in page.text
    assert 'aria-sort="ascending"' in page.text  # by rank
    api = (
        await client.get(f"/collection/runs/{run_id}/sellers?limit=200", headers=admin.headers)
    ).json()
    everyone = api["items"]
    total = len(everyone)
    assert total > 25
    assert sellers_of(page.text) == [s["username"] for s in everyone[:25]]
    new_on_page = [s["username"] for s in everyone[:25] if s["new_since_last_run"]]
    marked = re.findall(
        r'<tr class="is-new">\s*<td class="num">\d+</td>\s*<td class="seller">([^<]+)', page.text
    )
    assert marked == new_on_page

    second = await signed_in.get(f"/runs/{run_id}?page=2")
    assert sellers_of(second.text) == [s["username"] for s in everyone[25:50]]
    assert "Page 2 of" in second.text

    by_name = await signed_in.get(f"/runs/{run_id}?sort=seller")
    names = sorted((s["username"] for s in everyone), key=str.lower)
    assert sellers_of(by_name.text) == names[:25]
    reversed_names = await signed_in.get(f"/runs/{run_id}?sort=seller&order=desc")
    assert sellers_of(reversed_names.text) == list(reversed(names))[:25]
    by_feedback = await signed_in.get(f"/runs/{run_id}?sort=feedback")
    scores = [s["feedback_score"] for s in everyone if s["feedback_score"] is not None]
    shown_scores = [
        int(v.replace(",", ""))
        for v in re.findall(r'<td class="num">([\d,]+) <span class="muted">', by_feedback.text)
    ]
    assert shown_scores == sorted(scores, reverse=True)[: len(shown_scores)]
    # Ranks stay the ranking's, whatever the order.
    by_rank_desc = await signed_in.get(f"/runs/{run_id}?sort=rank&order=desc")
    assert f'<td class="num">{total}</td>' in by_rank_desc.text
    assert (await signed_in.get(f"/runs/{run_id}?sort=bogus&page=x")).status_code == 200


async def test_run_buttons_follow_the_allowed_transitions(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin()
    run = await client.post("/collection/runs", json={"category_ids": ["5"]}, headers=admin.headers)
    run_id = run.json()["id"]
    signed_in = await browser(admin)

    pending = await signed_in.get(f"/runs/{run_id}")
    assert f'action="/runs/{run_id}/start"' in pending.text
    assert f'action="/runs/{run_id}/cancel"' in pending.text
    assert f'action="/runs/{run_id}/pause"' not in pending.text
    assert f'action="/runs/{run_id}/resume"' not in pending.text
    assert f'data-live-url="/runs/{run_id}/live"' in pending.text

    refused = await signed_in.submit(f"/runs/{run_id}/pause", page=f"/runs/{run_id}")
    assert refused.status_code == 409
    assert "Could not pause the run: cannot pause a run that is pending" in refused.text
    assert (await signed_in.submit(f"/runs/{run_id}/explode")).status_code == 404

    cancelled = await signed_in.submit(f"/runs/{run_id}/cancel")
    assert cancelled.status_code == 303
    page = await signed_in.get(f"/runs/{run_id}")
    assert "Run cancelled" in page.text
    assert f'action="/runs/{run_id}/' not in page.text  # nothing left to press
    api = await client.get(f"/collection/runs/{run_id}", headers=admin.headers)
    assert api.json()["status"] == "cancelled"


async def test_a_stopping_or_waiting_run_says_so(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await actors.admin()
    run = await client.post("/collection/runs", json={"category_ids": ["5"]}, headers=admin.headers)
    run_id = run.json()["id"]
    signed_in = await browser(admin)
    resumes_at = datetime(2027, 7, 2, 7, 0, tzinfo=UTC)
    async with app.state.instance.database.transaction() as session:
        await session.execute(
            sa.update(CollectionRun)
            .where(CollectionRun.id == uuid.UUID(run_id))
            .values(
                status=RunStatus.PAUSING,
                lease_owner="elsewhere:1",
                lease_expires_at=utcnow() + timedelta(minutes=5),
                resumes_at=resumes_at,
                waiting_for="eBay's daily call limit (eBay reports 0 of 5000 calls left)",
            )
        )
    page = await signed_in.get(f"/runs/{run_id}")
    assert "Pausing: no new searches start" in page.text
    assert 'class="badge status-pausing"' in page.text
    assert (
        "Waiting for eBay&#39;s daily call limit (eBay reports 0 of 5000 calls left): "
        "continues at" in page.text
    )
    assert "2027-07-02T07:00:00+00:00" in page.text
    assert f'action="/runs/{run_id}/resume"' in page.text
    assert f'action="/runs/{run_id}/cancel"' in page.text
    assert f'action="/runs/{run_id}/pause"' not in page.text
    assert f'data-live-url="/runs/{run_id}/live"' in page.text  # still changing

    cancelling = await signed_in.submit(f"/runs/{run_id}/cancel")
    assert cancelling.status_code == 303
    page = await signed_in.get(f"/runs/{run_id}")
    assert "Cancelling: no new searches start" in page.text
    assert f'action="/runs/{run_id}/' not in page.text  # nothing left to press


# --- schedule -------------------------------------------------------------------------------


async def test_schedule_form_shows_api_errors_at_the_field_and_saves(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin()
    preset_id = await make_preset(client, admin)
    signed_in = await browser(admin)

    page = await signed_in.get("/schedule")
    assert "At 00:00 on day 1 of every month" in page.text  # the default, described
    assert page.text.count('<li><time datetime="') == 5  # and its next five times
    assert '<option value="Europe/Berlin">' in page.text
    for not_a_zone in ("localtime", "posixrules", "Factory"):  # the API would refuse them
        assert f'<option value="{not_a_zone}">' not in page.text
    assert "Nothing has fired yet" in page.text

    form = {
        "preset_id": preset_id,
        "cron_expression": "0 9 * * 1-5",
        "timezone": "Europe/Berlin",
        "enabled": "on",
    }
    bad_cron = await signed_in.submit(
        "/schedule", {**form, "cron_expression": "0 25 * * *"}, page="/schedule"
    )
    assert bad_cron.status_code == 400
    error = re.search(r'id="cron_expression-error" >([^<]+)</p>', bad_cron.text)
    assert error
    assert "hour" in error.group(1)
    assert "25" in error.group(1)
    assert 'value="0 25 * * *"' in bad_cron.text
    bad_zone = await signed_in.submit(
        "/schedule", {**form, "timezone": "Mars/Olympus"}, page="/schedule"
    )
    assert bad_zone.status_code == 400
    assert re.search(r'id="timezone-error" >[^<]*Mars/Olympus', bad_zone.text)
    no_preset = await signed_in.submit("/schedule", {**form, "preset_id": ""}, page="/schedule")
    assert "Choose a preset: an enabled schedule needs one." in no_preset.text
    schedule = await client.get("/collection/schedule", headers=admin.headers)
    assert schedule.json()["id"] is None  # nothing was saved

    saved = await signed_in.submit("/schedule", {**form, "notify_email": "on"}, page="/schedule")
    assert saved.status_code == 303
    page = await signed_in.get("/schedule")
    assert "Schedule saved: Electronics runs next on" in page.text
    schedule = (await client.get("/collection/schedule", headers=admin.headers)).json()
    assert schedule["cron_expression"] == "0 9 * * 1-5"
    assert schedule["timezone"] == "Europe/Berlin"
    assert schedule["enabled"]
    assert schedule["notify_email"]

    toggled = await signed_in.submit("/schedule", {**form, "enabled": ""}, page="/schedule")
    assert toggled.status_code == 303
    assert "It is disabled" in (await signed_in.get("/schedule")).text
    schedule = (await client.get("/collection/schedule", headers=admin.headers)).json()
    assert not schedule["enabled"]
    assert not schedule["notify_email"]


async def test_schedule_preview_fragment(browser: BrowserFactory, actors: Actors) -> None:
    admin = await actors.admin()
    signed_in = await browser(admin)
    fetch = {"X-Requested-With": "fetch"}
    good = await signed_in.get(
        "/schedule/preview?cron_expression=30 8 * * 1-5&timezone=America/New_York", headers=fetch
    )
    assert good.status_code == 200
    assert "data-error" not in good.text
    assert good.text.count("<li>") == 5
    assert "EST" in good.text or "EDT" in good.text
    bad = await signed_in.get("/schedule/preview?cron_expression=61 * * * *&timezone=UTC")
    assert 'data-error-field="cron_expression"' in bad.text
    assert "61" in bad.text
    zone = await signed_in.get("/schedule/preview?cron_expression=@daily&timezone=Nowhere")
    assert 'data-error-field="timezone"' in zone.text
    long = await signed_in.get(f"/schedule/preview?cron_expression={'1' * 300}&timezone=UTC")
    assert "at most 200 characters" in long.text


async def test_run_now_and_history_link_to_runs(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin()
    signed_in = await browser(admin)
    early = await signed_in.submit("/schedule/run-now", page="/schedule")
    assert early.status_code == 303
    assert "Save the schedule (with a preset) first" in (await signed_in.get("/schedule")).text

    preset_id = await make_preset(client, admin)
    await client.patch(
        "/collection/schedule",
        json={"preset_id": preset_id, "cron_expression": "@monthly", "enabled": True},
        headers=admin.headers,
    )
    started = await signed_in.submit("/schedule/run-now", page="/schedule")
    assert started.status_code == 303
    run_path = started.headers["location"]
    assert run_path.startswith("/runs/")
    skipped = await signed_in.submit("/schedule/run-now", page="/schedule")
    assert skipped.headers["location"] == "/schedule"
    page = await signed_in.get("/schedule")
    assert "Not started: another run is active" in page.text
    assert f'href="{run_path}">View run</a>' in page.text
    assert f'href="{run_path}">Active run</a>' in page.text
    assert "outcome-skipped" in page.text
    assert "outcome-started" in page.text
    await client.post(f"/collection{run_path}/cancel", headers=admin.headers)
