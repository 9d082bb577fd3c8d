"""Organizations, members, invitations and choosing the acting organization."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.helpers.actors import Actors


async def test_create_org_makes_caller_admin(client: httpx.AsyncClient, actors: Actors) -> None:
    user = actors.user()
    response = await client.post("/orgs", json={"name": "  Acme  "}, headers=user.headers)
    assert response.status_code == 201
    org = response.json()
    assert org["name"] == "Acme"
    me = (await client.get("/me", headers=user.headers)).json()
    assert me["memberships"] == [
        {
            "org_id": org["id"],
            "org_name": "Acme",
            "role": "admin",
            "permissions": [
                "admin.automation",
                "collection.run",
                "collection.view",
                "members.manage",
                "org.settings",
                "presets.manage",
            ],
        }
    ]


@pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": "x" * 201}, {"name": "x", "y": 1}])
async def test_invalid_org_is_422(client: httpx.AsyncClient, actors: Actors, body: object) -> None:
    user = actors.user()
    response = await client.post("/orgs", json=body, headers=user.headers)
    assert response.status_code == 422


async def test_add_existing_user_as_member(client: httpx.AsyncClient, actors: Actors) -> None:
    admin = await actors.admin()
    viewer = await actors.member(admin, "viewer")
    me = (await client.get("/me", headers=viewer.headers)).json()
    assert [(m["org_id"], m["role"]) for m in me["memberships"]] == [(str(admin.org_id), "viewer")]
    members = (await client.get("/orgs/current/members", headers=viewer.headers)).json()["items"]
    assert {(m["email"], m["role"], m["status"]) for m in members} == {
        (admin.email, "admin", "active"),
        (viewer.email, "viewer", "active"),
    }


async def test_invitation_becomes_membership_on_first_sign_in(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    admin = await actors.admin()
    newcomer = actors.user("Newcomer@Example.com")
    response = await client.post(
        "/orgs/current/members",
        json={"email": "NEWCOMER@example.com", "role": "member"},
        headers=admin.headers,
    )
    assert response.status_code == 201
    assert response.json()["status"] == "invited"
    assert response.json()["user_id"] is None
    invites = (await client.get("/orgs/current/invitations", headers=admin.headers)).json()
    assert [i["email"] for i in invites["items"]] == ["newcomer@example.com"]

    me = (await client.get("/me", headers=newcomer.headers)).json()
    assert [m["role"] for m in me["memberships"]] == ["member"]
    invites = (await client.get("/orgs/current/invitations", headers=admin.headers)).json()
    assert invites["items"] == []


async def test_invitation_for_a_known_user_is_claimed_on_next_request(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    """A user who exists but was invited (e.g. raced the add) still gets the membership."""
    admin = await actors.admin()
    user = actors.user()
    await client.get("/me", headers=user.headers)
    # Insert the invitation the way a racing add would have left it.
    database = client._transport.app.state.instance.database  # type: ignore[attr-defined]
    from app.tables import Invitation, Role

    async with database.transaction() as session:
        session.add(Invitation(org_id=admin.org_id, email=user.email, role=Role.VIEWER))
    me = (await client.get("/me", headers=user.headers)).json()
    assert [m["role"] for m in me["memberships"]] == ["viewer"]


@pytest.mark.parametrize("first_sign_in", [True, False])
async def test_adding_twice_is_409(
    client: httpx.AsyncClient, actors: Actors, first_sign_in: bool
) -> None:
    admin = await actors.admin()
    user = actors.user()
    if first_sign_in:
        await client.get("/me", headers=user.headers)
    body = {"email": user.email, "role": "viewer"}
    first = await client.post("/orgs/current/members", json=body, headers=admin.headers)
    assert first.status_code == 201
    second = await client.post("/orgs/current/members", json=body, headers=admin.headers)
    assert second.status_code == 409
    assert user.email in second.json()["detail"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"email": "a@example.com", "role": "owner"}, "'admin', 'member' or 'viewer'"),
        ({"email": "a@example.com", "extra": True}, "Extra inputs"),
    ],
)
async def test_invalid_member_is_422(
    client: httpx.AsyncClient, actors: Actors, body: object, message: str
) -> None:
    admin = await actors.admin()
    response = await client.post("/orgs/current/members", json=body, headers=admin.headers)
    assert response.status_code == 422
    assert message in response.text


async def test_several_memberships_need_x_org_id(client: httpx.AsyncClient, actors: Actors) -> None:
    first = await actors.admin("First")
    second = await client.post("/orgs", json={"name": "Second"}, headers=first.headers)
    second_id = second.json()["id"]

    response = await client.get("/collection/presets", headers=first.headers)
    assert response.status_code == 400
    assert "X-Org-Id" in response.json()["detail"]

    body = {"name": "only in second", "category_ids": ["1"]}
    created = await client.post(
        "/collection/presets", json=body, headers={**first.headers, "X-Org-Id": second_id}
    )
    assert created.status_code == 201
    in_first = await client.get(
        "/collection/presets", headers={**first.headers, "X-Org-Id": str(first.org_id)}
    )
    assert in_first.json()["items"] == []
    in_second = await client.get(
        "/collection/presets", headers={**first.headers, "X-Org-Id": second_id}
    )
    assert [p["name"] for p in in_second.json()["items"]] == ["only in second"]


async def test_malformed_x_org_id_is_400(client: httpx.AsyncClient, actors: Actors) -> None:
    admin = await actors.admin()
    response = await client.get(
        "/collection/presets", headers={**admin.headers, "X-Org-Id": "acme"}
    )
    assert response.status_code == 400
    assert response.json()["detail"] == "X-Org-Id must be an organization UUID, got 'acme'"


async def test_members_pagination(client: httpx.AsyncClient, actors: Actors) -> None:
    admin = await actors.admin()
    for _ in range(4):
        await actors.member(admin, "viewer")
    page1 = (
        await client.get("/orgs/current/members", params={"limit": 3}, headers=admin.headers)
    ).json()
    assert len(page1["items"]) == 3
    page2 = (
        await client.get(
            "/orgs/current/members",
            params={"limit": 3, "cursor": page1["next_cursor"]},
            headers=admin.headers,
        )
    ).json()
    assert len(page2["items"]) == 2
    assert page2["next_cursor"] is None
    emails = {m["email"] for m in page1["items"] + page2["items"]}
    assert len(emails) == 5


# --- changing roles, removing members, revoking invitations --------------------------------


async def test_an_admin_changes_a_members_role(client: httpx.AsyncClient, actors: Actors) -> None:
    admin = await actors.admin()
    member = await actors.member(admin, "member")
    response = await client.patch(
        f"/orgs/current/members/{member.user_id}", json={"role": "viewer"}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "user_id": str(member.user_id),
        "email": member.email,
        "role": "viewer",
        "status": "active",
        "created_at": response.json()["created_at"],
    }
    me = (await client.get("/me", headers=member.headers)).json()
    assert [m["role"] for m in me["memberships"]] == ["viewer"]
    refused = await client.post(
        "/collection/presets", json={"name": "n", "category_ids": ["1"]}, headers=member.headers
    )
    assert refused.status_code == 403  # the new role holds from the next request on


@pytest.mark.parametrize(
    ("body", "message"),
    [({"role": "owner"}, "'admin', 'member' or 'viewer'"), ({}, "Field required")],
)
async def test_invalid_role_change_is_422(
    client: httpx.AsyncClient, actors: Actors, body: object, message: str
) -> None:
    admin = await actors.admin()
    member = await actors.member(admin, "member")
    url = f"/orgs/current/members/{member.user_id}"
    response = await client.patch(url, json=body, headers=admin.headers)
    assert response.status_code == 422
    assert message in response.text
    members = (await client.get("/orgs/current/members", headers=admin.headers)).json()["items"]
    assert {m["email"]: m["role"] for m in members}[member.email] == "member"


async def test_the_last_admin_can_be_neither_demoted_nor_removed(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    admin = await actors.admin()
    url = f"/orgs/current/members/{admin.user_id}"
    for method, body in (("PATCH", {"role": "member"}), ("DELETE", None)):
        response = await client.request(method, url, json=body, headers=admin.headers)
        assert response.status_code == 409, method
        assert "only admin" in response.json()["detail"]

    second = await actors.member(admin, "admin")
    demoted = await client.patch(url, json={"role": "member"}, headers=admin.headers)
    assert demoted.status_code == 200  # another admin remains
    gone = await client.delete(f"/orgs/current/members/{second.user_id}", headers=second.headers)
    assert gone.status_code == 409  # ...and now that one is the last


async def test_two_admins_demoting_each_other_at_once_leave_one_admin(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    first = await actors.admin()
    second = await actors.member(first, "admin")
    results = await asyncio.gather(
        client.patch(
            f"/orgs/current/members/{second.user_id}",
            json={"role": "member"},
            headers=first.headers,
        ),
        client.patch(
            f"/orgs/current/members/{first.user_id}",
            json={"role": "member"},
            headers=second.headers,
        ),
    )
    # One wins. The other is refused: 409 when both checked before either wrote, or 403
    # when the winner committed before the loser's permissions were read (it is no longer
    # an admin). Never both.
    codes = sorted(r.status_code for r in results)
    assert codes in ([200, 403], [200, 409]), codes
    members = (await client.get("/orgs/current/members", headers=first.headers)).json()["items"]
    roles = [m["role"] for m in members]
    assert roles.count("admin") == 1


async def test_a_removed_member_loses_access_at_once(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    admin = await actors.admin()
    member = await actors.member(admin, "member")
    preset = await client.post(
        "/collection/presets",
        json={"name": "theirs", "category_ids": ["1"]},
        headers=member.headers,
    )
    assert preset.status_code == 201
    response = await client.delete(f"/orgs/current/members/{member.user_id}", headers=admin.headers)
    assert response.status_code == 204
    assert response.content == b""

    after = await client.get("/collection/presets", headers=member.headers)
    assert after.status_code == 403
    assert (await client.get("/me", headers=member.headers)).json()["memberships"] == []
    members = (await client.get("/orgs/current/members", headers=admin.headers)).json()["items"]
    assert [m["email"] for m in members] == [admin.email]
    kept = await client.get(f"/collection/presets/{preset.json()['id']}", headers=admin.headers)
    assert kept.status_code == 200  # what they made stays with the organization
    again = await client.delete(f"/orgs/current/members/{member.user_id}", headers=admin.headers)
    assert again.status_code == 404
    assert again.json()["detail"] == f"member {member.user_id} not found"


async def test_a_revoked_invitation_grants_nothing(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    admin = await actors.admin()
    invited = actors.user("late@example.com")
    body = {"email": invited.email, "role": "member"}
    assert (await client.post("/orgs/current/members", json=body, headers=admin.headers)).is_success
    revoked = await client.delete(
        "/orgs/current/invitations/Late@Example.com", headers=admin.headers
    )
    assert revoked.status_code == 204
    me = (await client.get("/me", headers=invited.headers)).json()
    assert me["memberships"] == []
    again = await client.delete("/orgs/current/invitations/late@example.com", headers=admin.headers)
    assert again.status_code == 404
    assert again.json()["detail"] == "invitation late@example.com not found"
