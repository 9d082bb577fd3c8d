"""Organizations, members, invitations and choosing the acting organization."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Actors


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
    database = client._transport.app.state.database  # type: ignore[attr-defined]
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
