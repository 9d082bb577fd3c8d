"""The tenancy matrix: every endpoint, every kind of caller.

No token or a bad token is 401; a role without the permission is 403; acting in an
organization one does not belong to is 403; another organization's resource is 404.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from markupsafe import escape
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app import presets as preset_service
from app.core.clock import utcnow
from app.core.database import SYSTEM, Database, DbActor, acting_as
from app.directory_tables import DIRECTORY_ALL, DirectoryScope, DirectorySeller
from app.tables import (
    CategoryPreset,
    CollectionRun,
    CollectionSchedule,
    FireOutcome,
    Invitation,
    Membership,
    Organization,
    Role,
    RunCategory,
    RunListing,
    RunProduct,
    RunSeller,
    RunStatus,
    ScheduleFire,
)
from app.watchlists.tables import DigestPreference, WatchedSeller
from tests.helpers.actors import Actor, Actors
from tests.helpers.browser import browsers
from tests.helpers.directory import completed_run, listings


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
    Endpoint("GET", "/orgs/current/settings", None),
    Endpoint("PATCH", "/orgs/current/settings", "org.settings", {"expected_fee_percent": 12}),
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
    Endpoint("GET", "/collection/runs/{run}/listings", "collection.view"),
    Endpoint("GET", "/collection/runs/{run}/export.csv", "collection.view"),
    # No earlier completed run to compare the world's run with: a permitted caller gets 409.
    Endpoint("GET", "/collection/runs/{run}/changes", "collection.view", ok=409),
    # The world's runs are cancelled, so a permitted caller reaches the lifecycle rule (409).
    Endpoint("POST", "/collection/runs/{run}/start", "collection.run", ok=409),
    Endpoint("POST", "/collection/runs/{run}/pause", "collection.run", ok=409),
    Endpoint("POST", "/collection/runs/{run}/resume", "collection.run", ok=409),
    Endpoint("POST", "/collection/runs/{run}/cancel", "collection.run", ok=409),
    # No earlier completed run either: the digest says so, with empty sections (200).
    Endpoint("GET", "/collection/runs/{run}/digest", "collection.view"),
    Endpoint("GET", "/collection/watchlist", "collection.view"),
    Endpoint("PUT", "/collection/watchlist/newly-starred", "collection.run", ok=201),
    Endpoint("DELETE", "/collection/watchlist/{watched}", "collection.run", ok=204),
    Endpoint("GET", "/me/digest", "collection.view"),
    Endpoint("PATCH", "/me/digest", "collection.view", {"subscribed": True, "top_n": 3}),
    Endpoint("GET", "/collection/sellers", "collection.view"),
    Endpoint("GET", "/collection/sellers/{seller}", "collection.view"),
]
RESOURCE_ENDPOINTS = [e for e in ORG_ENDPOINTS if "{" in e.path]
USER_ENDPOINTS = [Endpoint("GET", "/me", None), Endpoint("POST", "/orgs", None, {"name": "O"}, 201)]
ROLE_PERMISSIONS = {
    "admin": {
        "collection.view",
        "collection.run",
        "presets.manage",
        "members.manage",
        "org.settings",
    },
    "member": {"collection.view", "collection.run", "presets.manage"},
    "viewer": {"collection.view"},
}


@dataclass
class World:
    """Two organizations, each with a preset, a run, a viewer, a pending invitation and a
    watched seller, and a seller its completed run saw (A: seller-a, B: seller-b)."""

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
                "seller": "seller-a",
                "watched": WATCHED[0],
            }
        return {
            "preset": self.other_preset_id,
            "run": self.other_run_id,
            "member": str(self.other_viewer.user_id),
            "invitation": INVITED[1],
            "seller": "seller-b",
            "watched": WATCHED[1],
        }


INVITED = ("invited-a@example.com", "invited-b@example.com")
WATCHED = ("watched-by-a", "watched-by-b")


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


async def _seller_seen(
    client: httpx.AsyncClient, database: Database, actor: Actor, seller: str
) -> None:
    """A completed run of another category list that saw `seller-<seller>` (so the run
    of the matrix still has no earlier run to compare with)."""
    await completed_run(client, database, actor, listings(seller), utcnow())


@pytest.fixture
async def world(client: httpx.AsyncClient, actors: Actors, database: Database) -> World:
    admin = await actors.admin("Org A")
    other = await actors.admin("Org B")
    await _invite(client, admin, INVITED[0])
    await _invite(client, other, INVITED[1])
    for actor, seller in ((admin, WATCHED[0]), (other, WATCHED[1])):
        starred = await client.put(f"/collection/watchlist/{seller}", headers=actor.headers)
        assert starred.status_code == 201, starred.text
    world = World(
        admin=admin,
        preset_id=await _preset(client, admin, "A's preset"),
        run_id=await _cancelled_run(client, admin),
        viewer=await actors.member(admin, "viewer"),
        other_admin=other,
        other_preset_id=await _preset(client, other, "B's preset"),
        other_run_id=await _cancelled_run(client, other),
        other_viewer=await actors.member(other, "viewer"),
    )
    await _seller_seen(client, database, admin, "a")
    await _seller_seen(client, database, other, "b")
    return world


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
    watched = await client.get("/collection/watchlist", headers=world.other_admin.headers)
    assert [w["username"] for w in watched.json()["items"]] == [WATCHED[1]]


NOT_FOUND = {"watched": "seller {id} not found on the watchlist"}
"""The 404 messages that say more than `{kind} {id} not found`."""


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
        "seller": f"nobody-{missing_id[:8]}",
        "watched": f"nobody-{missing_id[:8]}",
    }
    missing = await _call(client, endpoint, missing_ids, world.admin.headers)
    foreign = await _call(client, endpoint, world.ids(own=False), world.admin.headers)
    assert missing.status_code == foreign.status_code == 404
    (kind,) = [kind for kind in missing_ids if f"{{{kind}}}" in endpoint.path]
    foreign_id = world.ids(own=False)[kind]
    message = NOT_FOUND.get(kind, "{kind} {id} not found")
    assert missing.json()["detail"] == message.format(kind=kind, id=missing_ids[kind])
    assert foreign.json()["detail"] == message.format(kind=kind, id=foreign_id)


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


# --- row-level security: the second wall (PostgreSQL) ------------------------------------------

TENANT_TABLES: list[type[Any]] = [
    Organization,
    Membership,
    Invitation,
    CategoryPreset,
    CollectionRun,
    RunCategory,
    RunProduct,
    RunListing,
    RunSeller,
    CollectionSchedule,
    ScheduleFire,
    WatchedSeller,
    DigestPreference,
    DirectoryScope,
    DirectorySeller,
]
ADMIN_ONLY_TABLES = {Invitation, CollectionSchedule, ScheduleFire}
OWN_ROWS_TABLES = {DigestPreference}
"""A member sees their own rows of these only (the seeded ones are the admins')."""


@dataclass
class Walled:
    """The world of the matrix above, with run results, a schedule and a fire in each
    organization, and A's admin a member of B too (so B's rows are not hidden merely
    because they are a stranger there)."""

    world: World
    org_a: uuid.UUID
    org_b: uuid.UUID
    runs: dict[uuid.UUID, uuid.UUID]  # run id -> its organization


def _require_postgresql(database: Database) -> None:
    if database.dialect != "postgresql":
        pytest.skip("row-level security is a PostgreSQL feature; on SQLite the API's filters do")


async def _seed_results(session: AsyncSession, org_id: uuid.UUID, run_id: uuid.UUID) -> None:
    """Results, a schedule and a fire of one organization, written as the service owner."""
    session.add(RunCategory(run_id=run_id, position=100, category_id="172282"))
    session.add(
        RunProduct(
            run_id=run_id,
            asin="B000000001",
            category_id="172282",
            category_position=100,
            sales_rank=1,
            title="Widget",
            brand=None,
            price=Decimal("9.99"),
            currency="USD",
            upcs=[],
            eans=[],
        )
    )
    session.add(
        RunListing(
            run_id=run_id,
            asin="B000000001",
            item_id="v1|1|0",
            title="Widget",
            price=Decimal("10.99"),
            currency="USD",
            seller_username="seller",
            seller_feedback_score=10,
            seller_feedback_percentage=Decimal("99.5"),
            url="https://www.ebay.com/itm/1",
        )
    )
    session.add(RunSeller(run_id=run_id, username="seller"))
    session.add(WatchedSeller(org_id=org_id, username="seller", starred_by=None))
    admin_id = await session.scalar(
        sa.select(Membership.user_id).where(
            Membership.org_id == org_id, Membership.role == Role.ADMIN
        )
    )
    session.add(DigestPreference(org_id=org_id, user_id=admin_id, subscribed=True))
    schedule = CollectionSchedule(org_id=org_id)
    session.add(schedule)
    await session.flush()
    session.add(
        ScheduleFire(
            org_id=org_id,
            schedule_id=schedule.id,
            scheduled_for=utcnow(),
            outcome=FireOutcome.MISSED,
            instance_id="test",
        )
    )


@pytest.fixture
async def walled(client: httpx.AsyncClient, world: World, database: Database) -> Walled:
    _require_postgresql(database)
    assert world.admin.org_id is not None
    assert world.other_admin.org_id is not None
    org_a, org_b = world.admin.org_id, world.other_admin.org_id
    runs = {uuid.UUID(world.run_id): org_a, uuid.UUID(world.other_run_id): org_b}
    both = await client.post(
        "/orgs/current/members",
        json={"email": world.admin.email, "role": "member"},
        headers=world.other_admin.headers,
    )
    assert both.status_code == 201, both.text
    async with database.transaction() as session:  # no actor: the owner, who sees everything
        for run_id, org_id in runs.items():
            await _seed_results(session, org_id, run_id)
        # and the runs that saw the world's sellers, with their results
        runs |= dict(
            (await session.execute(sa.select(CollectionRun.id, CollectionRun.org_id))).all()
        )
    return Walled(world, org_a, org_b, runs)


def _orgs_of(
    model: type[Any], rows: Sequence[Any], runs: dict[uuid.UUID, uuid.UUID]
) -> set[uuid.UUID]:
    """The organizations the given rows (`_owner_column` values) belong to."""
    if _owner_column(model) is getattr(model, "run_id", None):
        return {runs[run_id] for run_id in rows}
    return set(rows)


def _owner_column(model: type[Any]) -> Any:
    """The column that tells whose a row is: its organization, or its run."""
    if model is Organization:
        return Organization.id
    if "org_id" in model.__table__.c:
        return model.org_id
    return model.run_id


async def _visible_orgs(
    database: Database, actor: DbActor | None, model: type[Any], walled: Walled
) -> set[uuid.UUID]:
    with acting_as(actor):
        async with database.read() as session:
            # deliberately no organization filter: the policy must do the filtering
            rows = (await session.scalars(sa.select(_owner_column(model)))).all()
    return _orgs_of(model, rows, walled.runs)


def _foreign_row(model: type[Any], walled: Walled, schedule_b: uuid.UUID) -> Any:
    """A new row of organization B (or of B's run) for `model`."""
    org_b = walled.org_b
    run_b = uuid.UUID(walled.world.other_run_id)
    rows: dict[type[Any], Any] = {
        Organization: Organization(name="Not B, but not A's to create either"),
        Membership: Membership(org_id=org_b, user_id=walled.world.viewer.user_id, role=Role.ADMIN),
        Invitation: Invitation(org_id=org_b, email="sneaky@example.com", role=Role.ADMIN),
        CategoryPreset: CategoryPreset(org_id=org_b, name="planted", category_ids=["1"]),
        CollectionRun: CollectionRun(
            org_id=org_b,
            name="planted",
            status=RunStatus.CANCELLED,
            category_ids=["1"],
            products_per_category=1,
            listings_per_product=1,
        ),
        RunCategory: RunCategory(run_id=run_b, position=101, category_id="1"),
        RunProduct: RunProduct(
            run_id=run_b,
            asin="B000000002",
            category_id="1",
            category_position=101,
            sales_rank=2,
            title="planted",
            brand=None,
            price=None,
            currency="USD",
            upcs=[],
            eans=[],
        ),
        RunListing: RunListing(
            run_id=run_b,
            asin="B000000001",
            item_id="v1|2|0",
            title="planted",
            price=None,
            currency="USD",
            seller_username="planted",
            seller_feedback_score=None,
            seller_feedback_percentage=None,
            url="https://www.ebay.com/itm/2",
        ),
        RunSeller: RunSeller(run_id=run_b, username="planted"),
        CollectionSchedule: CollectionSchedule(org_id=org_b),
        WatchedSeller: WatchedSeller(org_id=org_b, username="planted", starred_by=None),
        # A's admin is a member of B too: only the policy stands in the way.
        DigestPreference: DigestPreference(org_id=org_b, user_id=walled.world.admin.user_id),
        ScheduleFire: ScheduleFire(
            org_id=org_b,
            schedule_id=schedule_b,
            scheduled_for=utcnow() + timedelta(days=1),
            outcome=FireOutcome.STARTED,
            instance_id="test",
        ),
        DirectoryScope: DirectoryScope(
            org_id=org_b,
            scope_id=uuid.uuid4(),
            category_ids=["1"],
            runs=1,
            latest_run_id=run_b,
            latest_run_at=utcnow(),
        ),
        DirectorySeller: DirectorySeller(
            org_id=org_b,
            scope_id=DIRECTORY_ALL,
            username="planted",
            first_seen_at=utcnow(),
            last_seen_at=utcnow(),
            runs_seen=1,
            last_scope_id=uuid.uuid4(),
            last_run_id=run_b,
            last_rank=1,
            last_products=1,
            last_listings=1,
        ),
    }
    return rows[model]


@pytest.mark.parametrize("model", TENANT_TABLES, ids=lambda model: model.__tablename__)
async def test_acting_in_an_org_sees_none_of_another_orgs_rows(
    walled: Walled, database: Database, model: type[Any]
) -> None:
    """A query without an organization filter, acting as A's admin in A (as a request
    does), returns A's rows and nothing of B, though that user is a member of B too."""
    everything = await _visible_orgs(database, None, model, walled)
    assert everything == {walled.org_a, walled.org_b}  # B's rows exist: the check can fail
    in_a = DbActor(user_id=walled.world.admin.user_id, org_id=walled.org_a)
    assert await _visible_orgs(database, in_a, model, walled) == {walled.org_a}
    assert await _visible_orgs(database, SYSTEM, model, walled) == everything


async def _insert_as(database: Database, actor: DbActor, row: Any) -> None:
    with acting_as(actor):
        async with database.transaction() as session:
            session.add(row)
            await session.flush()


@pytest.mark.parametrize("model", TENANT_TABLES, ids=lambda model: model.__tablename__)
async def test_acting_in_an_org_cannot_write_into_another(
    walled: Walled, database: Database, model: type[Any]
) -> None:
    """Inserting a row of B is refused; a DELETE without filter reaches A's rows only."""
    async with database.read() as session:
        schedule_b = await session.scalar(
            sa.select(CollectionSchedule.id).where(CollectionSchedule.org_id == walled.org_b)
        )
        counts = dict(
            (
                await session.execute(
                    sa.select(_owner_column(model), sa.func.count()).group_by(_owner_column(model))
                )
            ).all()
        )
    assert schedule_b is not None
    in_a = DbActor(user_id=walled.world.admin.user_id, org_id=walled.org_a)
    with pytest.raises(DBAPIError, match="row-level security"):
        await _insert_as(database, in_a, _foreign_row(model, walled, schedule_b))

    with acting_as(in_a):
        async with database.sessions() as session, session.begin():
            deleted = await session.execute(sa.delete(model))  # no filter: the policy filters
            own = sum(
                n
                for key, n in counts.items()
                if _orgs_of(model, [key], walled.runs) == {walled.org_a}
            )
            # organizations are deleted by nobody acting in one
            assert deleted.rowcount == (0 if model is Organization else own)  # type: ignore[attr-defined]
            assert own > 0
            await session.rollback()
    assert await _visible_orgs(database, None, model, walled) == {walled.org_a, walled.org_b}


@pytest.mark.parametrize("model", TENANT_TABLES, ids=lambda model: model.__tablename__)
async def test_a_viewer_sees_only_what_members_may(
    walled: Walled, database: Database, model: type[Any]
) -> None:
    """A viewer of A sees A's rows, but not its invitations, schedule or fire log, nor the
    admin's digest preferences."""
    viewer = DbActor(user_id=walled.world.viewer.user_id, org_id=walled.org_a)
    expected = set() if model in ADMIN_ONLY_TABLES | OWN_ROWS_TABLES else {walled.org_a}
    assert await _visible_orgs(database, viewer, model, walled) == expected


async def test_a_member_reads_and_writes_only_their_own_digest_preferences(
    walled: Walled, database: Database
) -> None:
    """Digest preferences are each member's own, within the organization too: A's viewer
    can neither write nor change the admin's, and sees their own once they have some."""
    viewer = DbActor(user_id=walled.world.viewer.user_id, org_id=walled.org_a)
    admins = DigestPreference(org_id=walled.org_a, user_id=walled.world.admin.user_id)
    with pytest.raises(DBAPIError, match="row-level security"):
        await _insert_as(database, viewer, admins)
    with acting_as(viewer):
        async with database.transaction() as session:
            changed = await session.execute(sa.update(DigestPreference).values(top_n=1))
            assert changed.rowcount == 0  # type: ignore[attr-defined]
    own = DigestPreference(org_id=walled.org_a, user_id=walled.world.viewer.user_id)
    await _insert_as(database, viewer, own)
    assert await _visible_orgs(database, viewer, DigestPreference, walled) == {walled.org_a}
    with acting_as(viewer):
        async with database.read() as session:
            users = set(await session.scalars(sa.select(DigestPreference.user_id)))
    assert users == {walled.world.viewer.user_id}


@pytest.mark.parametrize("model", TENANT_TABLES, ids=lambda model: model.__tablename__)
async def test_acting_in_an_org_one_does_not_belong_to_sees_nothing(
    walled: Walled, database: Database, model: type[Any]
) -> None:
    """Even if the application named the wrong organization, the database checks the
    membership: A's viewer "acting in B" sees nothing of B (or of A)."""
    stray = DbActor(user_id=walled.world.viewer.user_id, org_id=walled.org_b)
    assert await _visible_orgs(database, stray, model, walled) == set()


@pytest.mark.parametrize("model", TENANT_TABLES, ids=lambda model: model.__tablename__)
async def test_a_user_in_no_org_yet_sees_only_their_own_memberships(
    walled: Walled, database: Database, model: type[Any]
) -> None:
    """Before the request picks an organization (provisioning, /me), the user sees the
    organizations they belong to and their memberships there, and no organization's data."""
    user = DbActor(user_id=walled.world.admin.user_id)
    expected = {walled.org_a, walled.org_b} if model in (Organization, Membership) else set()
    assert await _visible_orgs(database, user, model, walled) == expected
    if model is Membership:
        with acting_as(user):
            async with database.read() as session:
                users = set(await session.scalars(sa.select(Membership.user_id)))
        assert users == {walled.world.admin.user_id}


@pytest.mark.parametrize("path", ["/collection/presets", "/presets"], ids=["api", "web"])
async def test_a_request_that_forgets_its_filter_sees_only_its_org(
    client: httpx.AsyncClient,
    app: FastAPI,
    world: World,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
) -> None:
    """The API and the pages act in their organization before the first query: a listing
    whose service forgot the organization filter still shows that organization's rows only
    (all of them, so acting in no organization, which shows none, would fail too)."""
    _require_postgresql(database)

    async def unfiltered(
        session: AsyncSession, *, org_id: uuid.UUID, page: Any
    ) -> tuple[list[CategoryPreset], None]:
        return list(await session.scalars(sa.select(CategoryPreset))), None  # the bug

    monkeypatch.setattr(preset_service, "list_presets", unfiltered)
    if path == "/presets":
        async with browsers(app) as open_browser:
            browser = await open_browser(world.viewer)
            response = await browser.get(path)
    else:
        response = await client.get(path, headers=world.viewer.headers)
    assert response.status_code == 200, response.text

    def shown(name: str) -> str:
        return str(escape(name)) if path == "/presets" else name  # the page escapes "'"

    assert shown("A's preset") in response.text
    assert shown("B's preset") not in response.text
