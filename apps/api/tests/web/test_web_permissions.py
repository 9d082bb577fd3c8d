"""The web UI through the in-process client: permissions enforced by the server (admins,
members, viewers), tenant isolation, and choosing or creating an organization."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from app.web.session import ORG_COOKIE
from tests.helpers.actors import Actors
from tests.helpers.browser import BrowserFactory
from tests.helpers.web import HTML, make_preset

# --- permissions and tenancy ---------------------------------------------------------------------


async def test_schedule_page_is_for_admins_only(browser: BrowserFactory, actors: Actors) -> None:
    admin = await actors.admin()
    member = await actors.member(admin, "member")
    as_admin = await browser(admin)
    as_member = await browser(member)

    assert 'href="/schedules"' in (await as_admin.get("/runs")).text
    assert (await as_admin.get("/schedule")).status_code == 200

    runs = await as_member.get("/runs")
    assert runs.status_code == 200
    assert 'href="/schedules"' not in runs.text  # the link is hidden...
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
