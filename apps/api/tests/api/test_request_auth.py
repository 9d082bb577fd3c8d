"""Who is asking is read afresh by every request, on every instance: a change made through
one instance (or straight in the database) binds the very next request to another
instance sharing the database. Two apps here are two instances: each has its own engine,
pool and token memo, and nothing else in common but the database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app.core.config import Settings
from app.core.database import Database
from app.main import create_app
from app.tables import User
from tests.helpers.actors import Actor, Actors
from tests.helpers.browser import Browser, BrowserFactory, browsers, form_context_of


@pytest.fixture
async def other_app(app: FastAPI, settings: Settings) -> AsyncIterator[FastAPI]:
    """A second instance on the same database (started after the shared app migrated it)."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def other(other_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the second instance."""
    transport = httpx.ASGITransport(app=other_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def _presets(http: httpx.AsyncClient, actor: Actor) -> int:
    return (await http.get("/collection/presets", headers=actor.headers)).status_code


async def test_a_removed_member_is_refused_by_the_other_instance_at_once(
    client: httpx.AsyncClient, other: httpx.AsyncClient, actors: Actors
) -> None:
    admin = await actors.admin()
    member = await actors.member(admin, "member")
    assert await _presets(other, member) == 200  # the other instance knows them now

    removed = await client.delete(f"/orgs/current/members/{member.user_id}", headers=admin.headers)
    assert removed.status_code == 204, removed.text

    refused = await other.get("/collection/presets", headers=member.headers)
    assert refused.status_code == 403
    assert "not a member of any organization" in refused.json()["detail"]
    named = await other.get(
        "/collection/presets", headers={**member.headers, "X-Org-Id": str(admin.org_id)}
    )
    assert named.status_code == 403


async def test_a_role_change_binds_the_other_instance_at_once(
    client: httpx.AsyncClient, other: httpx.AsyncClient, actors: Actors
) -> None:
    admin = await actors.admin()
    colleague = await actors.member(admin, "admin")
    assert (await other.get("/collection/schedule", headers=colleague.headers)).status_code == 200

    demoted = await client.patch(
        f"/orgs/current/members/{colleague.user_id}",
        json={"role": "viewer"},
        headers=admin.headers,
    )
    assert demoted.status_code == 200, demoted.text

    refused = await other.get("/collection/schedule", headers=colleague.headers)
    assert refused.status_code == 403
    assert "role 'viewer' lacks it" in refused.json()["detail"]
    assert await _presets(other, colleague) == 200  # a viewer still sees the presets

    promoted = await other.patch(
        f"/orgs/current/members/{colleague.user_id}",
        json={"role": "admin"},
        headers=admin.headers,
    )
    assert promoted.status_code == 200, promoted.text
    assert (await client.get("/collection/schedule", headers=colleague.headers)).status_code == 200


async def test_a_member_added_through_one_instance_is_admitted_by_the_other(
    client: httpx.AsyncClient, other: httpx.AsyncClient, actors: Actors
) -> None:
    admin = await actors.admin()
    newcomer = actors.user()
    assert (await other.get("/me", headers=newcomer.headers)).json()["memberships"] == []

    added = await client.post(
        "/orgs/current/members",
        json={"email": newcomer.email, "role": "viewer"},
        headers=admin.headers,
    )
    assert added.status_code == 201, added.text
    assert await _presets(other, newcomer) == 200


async def test_a_deleted_user_keeps_no_access_on_any_instance(
    client: httpx.AsyncClient, other: httpx.AsyncClient, actors: Actors, database: Database
) -> None:
    """A valid token of a deleted user provisions a new user, who belongs to nothing."""
    admin = await actors.admin()
    member = await actors.member(admin, "member")
    assert await _presets(other, member) == 200

    async with database.transaction() as session:
        await session.execute(sa.delete(User).where(User.id == member.user_id))

    assert await _presets(other, member) == 403
    assert await _presets(client, member) == 403
    me = await other.get("/me", headers=member.headers)
    assert me.status_code == 200
    assert me.json()["memberships"] == []


async def test_signing_out_ends_the_web_session_on_the_other_instance_at_once(
    browser: BrowserFactory, other_app: FastAPI, actors: Actors
) -> None:
    admin = await actors.admin()
    here = await browser(admin)
    async with browsers(other_app) as open_there:
        there: Browser = await open_there()
        there.http.cookies.update(here.http.cookies)  # the same browser, load-balanced
        assert (await there.get("/runs")).status_code == 200

        out = await here.submit("/sign-out")
        assert out.status_code == 303

        ended = await there.get("/runs")
        assert ended.status_code == 303
        assert ended.headers["location"].startswith("/sign-in")


async def test_a_removed_member_cannot_submit_a_form_to_the_other_instance(
    browser: BrowserFactory,
    other_app: FastAPI,
    client: httpx.AsyncClient,
    actors: Actors,
) -> None:
    admin = await actors.admin()
    member = await actors.member(admin, "member")
    here = await browser(member)
    form = await here.get("/presets/new")
    async with browsers(other_app) as open_there:
        there: Browser = await open_there()
        there.http.cookies.update(here.http.cookies)

        removed = await client.delete(
            f"/orgs/current/members/{member.user_id}", headers=admin.headers
        )
        assert removed.status_code == 204

        refused = await there.http.post(
            "/presets", data={**form_context_of(form.text), "name": "Late", "category_ids": "1"}
        )
        assert refused.status_code == 403
        assert "nothing was changed" in refused.text
    listed = await client.get("/collection/presets", headers=admin.headers)
    assert listed.json()["items"] == []
