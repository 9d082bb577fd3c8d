"""The tenancy matrix: every endpoint, every kind of caller.

No token or a bad token is 401; a role without the permission is 403; acting in an
organization one does not belong to is 403; another organization's resource is 404.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import Actor, Actors


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # "{preset}", "{run}"... are replaced by one of the organization under test
    permission: str | None  # None: any member of the organization
    body: Any = None
    ok: int = 200

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


ORG_ENDPOINTS = [
    Endpoint("GET", "/orgs/current/members", None),
    Endpoint("POST", "/orgs/current/members", "members.manage", {"email": "x@example.com"}, 201),
    Endpoint("GET", "/orgs/current/invitations", "members.manage"),
    Endpoint("PATCH", "/orgs/current/members/{member}", "members.manage", {"role": "member"}),
    Endpoint("DELETE", "/orgs/current/members/{member}", "members.manage", ok=204),
    Endpoint("DELETE", "/orgs/current/invitations/{invitation}", "members.manage", ok=204),
    Endpoint("GET", "/collection/presets", "collection.view"),
    Endpoint(
        "POST", "/collection/presets", "presets.manage", {"name": "n", "category_ids": ["1"]}, 201
    ),
    Endpoint("GET", "/collection/presets/{preset}", "collection.view"),
    Endpoint("PATCH", "/collection/presets/{preset}", "presets.manage", {"name": "renamed"}),
    Endpoint("DELETE", "/collection/presets/{preset}", "presets.manage", ok=204),
    Endpoint("GET", "/collection/runs", "collection.view"),
    Endpoint("POST", "/collection/runs", "collection.run", {"category_ids": ["1"]}, 201),
    Endpoint("GET", "/collection/runs/{run}", "collection.view"),
    Endpoint("GET", "/collection/runs/{run}/sellers", "collection.view"),
    Endpoint("GET", "/collection/runs/{run}/export.csv", "collection.view"),
    # The world's runs are cancelled, so a permitted caller reaches the lifecycle rule (409).
    Endpoint("POST", "/collection/runs/{run}/start", "collection.run", ok=409),
    Endpoint("POST", "/collection/runs/{run}/pause", "collection.run", ok=409),
    Endpoint("POST", "/collection/runs/{run}/resume", "collection.run", ok=409),
    Endpoint("POST", "/collection/runs/{run}/cancel", "collection.run", ok=409),
]
RESOURCE_ENDPOINTS = [e for e in ORG_ENDPOINTS if "{" in e.path]
USER_ENDPOINTS = [Endpoint("GET", "/me", None), Endpoint("POST", "/orgs", None, {"name": "O"}, 201)]
ROLE_PERMISSIONS = {
    "admin": {"collection.view", "collection.run", "presets.manage", "members.manage"},
    "member": {"collection.view", "collection.run", "presets.manage"},
    "viewer": {"collection.view"},
}


@dataclass
class World:
    """Two organizations, each with a preset, a run, a viewer and a pending invitation."""

    admin: Actor
    preset_id: str
    run_id: str
    viewer: Actor
    other_admin: Actor
    other_preset_id: str
    other_run_id: str
    other_viewer: Actor

    def ids(self, own: bool) -> dict[str, str]:
        if own:
            return {
                "preset": self.preset_id,
                "run": self.run_id,
                "member": str(self.viewer.user_id),
                "invitation": INVITED[0],
            }
        return {
            "preset": self.other_preset_id,
            "run": self.other_run_id,
            "member": str(self.other_viewer.user_id),
            "invitation": INVITED[1],
        }


INVITED = ("invited-a@example.com", "invited-b@example.com")


async def _cancelled_run(client: httpx.AsyncClient, actor: Actor) -> str:
    body = {"category_ids": ["172282"]}
    response = await client.post("/collection/runs", json=body, headers=actor.headers)
    assert response.status_code == 201, response.text
    run_id = str(response.json()["id"])
    cancel = await client.post(f"/collection/runs/{run_id}/cancel", headers=actor.headers)
    assert cancel.status_code == 200
    return run_id


async def _preset(client: httpx.AsyncClient, actor: Actor, name: str) -> str:
    body = {"name": name, "category_ids": ["172282"]}
    response = await client.post("/collection/presets", json=body, headers=actor.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _invite(client: httpx.AsyncClient, actor: Actor, email: str) -> None:
    body = {"email": email, "role": "viewer"}
    response = await client.post("/orgs/current/members", json=body, headers=actor.headers)
    assert response.status_code == 201, response.text


@pytest.fixture
async def world(client: httpx.AsyncClient, actors: Actors) -> World:
    admin = await actors.admin("Org A")
    other = await actors.admin("Org B")
    await _invite(client, admin, INVITED[0])
    await _invite(client, other, INVITED[1])
    return World(
        admin=admin,
        preset_id=await _preset(client, admin, "A's preset"),
        run_id=await _cancelled_run(client, admin),
        viewer=await actors.member(admin, "viewer"),
        other_admin=other,
        other_preset_id=await _preset(client, other, "B's preset"),
        other_run_id=await _cancelled_run(client, other),
        other_viewer=await actors.member(other, "viewer"),
    )


async def _call(
    client: httpx.AsyncClient, endpoint: Endpoint, ids: dict[str, str], headers: dict[str, str]
) -> httpx.Response:
    path = endpoint.path.format(**ids)
    return await client.request(endpoint.method, path, json=endpoint.body, headers=headers)


ALL_ENDPOINTS = ORG_ENDPOINTS + USER_ENDPOINTS


@pytest.mark.parametrize("endpoint", ALL_ENDPOINTS, ids=str)
@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer", "Bearer garbage", "Bearer a.b.c", "Basic dXNlcjpwYXNz"],
    ids=["none", "empty-bearer", "garbage", "dots", "basic"],
)
async def test_unauthenticated_is_401(
    client: httpx.AsyncClient, world: World, endpoint: Endpoint, authorization: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = await _call(client, endpoint, world.ids(own=True), headers)
    assert response.status_code == 401, response.text


@pytest.mark.parametrize("endpoint", ORG_ENDPOINTS, ids=str)
@pytest.mark.parametrize("role", ["admin", "member", "viewer"])
async def test_role_matrix(
    client: httpx.AsyncClient, actors: Actors, world: World, endpoint: Endpoint, role: str
) -> None:
    actor = world.admin if role == "admin" else await actors.member(world.admin, role)
    response = await _call(client, endpoint, world.ids(own=True), actor.headers)
    allowed = endpoint.permission is None or endpoint.permission in ROLE_PERMISSIONS[role]
    if allowed:
        assert response.status_code == endpoint.ok, response.text
    else:
        assert response.status_code == 403, response.text
        assert endpoint.permission in response.json()["detail"]


@pytest.mark.parametrize("endpoint", RESOURCE_ENDPOINTS, ids=str)
@pytest.mark.parametrize("role", ["admin", "member", "viewer"])
async def test_other_orgs_resource_is_404(
    client: httpx.AsyncClient, actors: Actors, world: World, endpoint: Endpoint, role: str
) -> None:
    actor = world.admin if role == "admin" else await actors.member(world.admin, role)
    response = await _call(client, endpoint, world.ids(own=False), actor.headers)
    allowed = endpoint.permission is None or endpoint.permission in ROLE_PERMISSIONS[role]
    # A role lacking the permission learns nothing either way; one that has it sees "not found".
    assert response.status_code == (404 if allowed else 403), response.text
    # and the other organization's resources are untouched
    check = await client.get(
        f"/collection/presets/{world.other_preset_id}", headers=world.other_admin.headers
    )
    assert check.json()["name"] == "B's preset"
    run = await client.get(
        f"/collection/runs/{world.other_run_id}", headers=world.other_admin.headers
    )
    assert run.json()["status"] == "cancelled"
    members = await client.get("/orgs/current/members", headers=world.other_admin.headers)
    viewer = [m for m in members.json()["items"] if m["user_id"] == str(world.other_viewer.user_id)]
    assert [m["role"] for m in viewer] == ["viewer"]
    invites = await client.get("/orgs/current/invitations", headers=world.other_admin.headers)
    assert [i["email"] for i in invites.json()["items"]] == [INVITED[1]]


@pytest.mark.parametrize("endpoint", RESOURCE_ENDPOINTS, ids=str)
async def test_missing_resource_looks_like_another_orgs(
    client: httpx.AsyncClient, world: World, endpoint: Endpoint
) -> None:
    missing_id = str(uuid.uuid4())
    missing_ids = {
        "preset": missing_id,
        "run": missing_id,
        "member": missing_id,
        "invitation": f"nobody-{missing_id[:8]}@example.com",
    }
    missing = await _call(client, endpoint, missing_ids, world.admin.headers)
    foreign = await _call(client, endpoint, world.ids(own=False), world.admin.headers)
    assert missing.status_code == foreign.status_code == 404
    (kind,) = [kind for kind in missing_ids if f"{{{kind}}}" in endpoint.path]
    foreign_id = world.ids(own=False)[kind]
    assert missing.json()["detail"] == f"{kind} {missing_ids[kind]} not found"
    assert foreign.json()["detail"] == f"{kind} {foreign_id} not found"


@pytest.mark.parametrize("endpoint", ORG_ENDPOINTS, ids=str)
async def test_acting_in_a_foreign_org_is_403(
    client: httpx.AsyncClient, world: World, endpoint: Endpoint
) -> None:
    headers = {**world.admin.headers, "X-Org-Id": str(world.other_admin.org_id)}
    response = await _call(client, endpoint, world.ids(own=False), headers)
    assert response.status_code == 403, response.text
    assert "not a member" in response.json()["detail"]


@pytest.mark.parametrize("endpoint", ORG_ENDPOINTS, ids=str)
async def test_user_without_org_is_403(
    client: httpx.AsyncClient, actors: Actors, world: World, endpoint: Endpoint
) -> None:
    loner = actors.user()
    response = await _call(client, endpoint, world.ids(own=True), loner.headers)
    assert response.status_code == 403, response.text
    assert "POST /orgs" in response.json()["detail"]


async def test_org_listing_never_shows_other_orgs(client: httpx.AsyncClient, world: World) -> None:
    presets = (await client.get("/collection/presets", headers=world.admin.headers)).json()
    assert [p["id"] for p in presets["items"]] == [world.preset_id]
    members = (await client.get("/orgs/current/members", headers=world.admin.headers)).json()
    assert {m["email"] for m in members["items"]} == {world.admin.email, world.viewer.email}
    invites = (await client.get("/orgs/current/invitations", headers=world.admin.headers)).json()
    assert [i["email"] for i in invites["items"]] == [INVITED[0]]
