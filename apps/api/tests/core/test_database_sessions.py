"""The database layer's rules for sessions: read sessions never write (SQLite would fail to
upgrade them), writers queue on SQLite's lock instead of failing, each PostgreSQL
statement acts as the actor of its context, and idle pooled connections are checked
before use."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app.core import database as database_module
from app.core.config import Settings
from app.core.database import (
    RLS_ROLE,
    Database,
    DbActor,
    WriteInReadSessionError,
    acting_as,
)
from app.main import create_app
from app.tables import Organization
from tests.helpers.actors import Actors


async def test_a_read_session_refuses_to_write(database: Database) -> None:
    async with database.read() as session:
        with pytest.raises(WriteInReadSessionError, match="cannot INSERT"):
            await session.execute(sa.insert(Organization).values(name="never"))
    async with database.read() as session:
        session.add(Organization(name="never either"))
        with pytest.raises(WriteInReadSessionError):
            await session.flush()
    async with database.read() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(Organization)) == 0


@pytest.fixture
async def other_app(app: FastAPI, settings: Settings) -> AsyncIterator[FastAPI]:
    """A second instance on the same database: its own pool, so its own SQLite locks."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


async def test_a_write_heavy_mix_on_two_instances_never_finds_the_database_locked(
    client: httpx.AsyncClient, other_app: FastAPI, actors: Actors
) -> None:
    """PATCHes of a preset and of the schedule on two instances at once, with reads in
    between: writers wait their turn on the busy timeout (BEGIN IMMEDIATE), readers never
    wait (WAL, and read sessions do not upgrade)."""
    admin = await actors.admin()
    preset = await client.post(
        "/collection/presets", json={"name": "Mix", "category_ids": ["1"]}, headers=admin.headers
    )
    assert preset.status_code == 201, preset.text
    preset_path = f"/collection/presets/{preset.json()['id']}"
    transport = httpx.ASGITransport(app=other_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:

        async def step(number: int) -> int:
            http = (client, other)[number % 2]
            kind = number % 4
            if kind == 0:
                body = {"category_ids": [str(1000 + number)]}
                response = await http.patch(preset_path, json=body, headers=admin.headers)
            elif kind == 1:
                cron = f"0 {number % 24} 1 * *"
                response = await http.patch(
                    "/collection/schedule", json={"cron_expression": cron}, headers=admin.headers
                )
            elif kind == 2:
                response = await http.get("/collection/presets", headers=admin.headers)
            else:
                response = await http.get("/collection/schedule", headers=admin.headers)
            assert "locked" not in response.text
            return response.status_code

        statuses = await asyncio.gather(*(step(n) for n in range(80)))
    assert set(statuses) == {200}


QUERY_ACTOR = sa.text(
    "SELECT current_user, current_setting('app.user_id', true), current_setting('app.org_id', true)"
)


def _postgresql_only(database: Database) -> None:
    if database.dialect != "postgresql":
        pytest.skip("row-level security is a PostgreSQL feature; SQLite has no actor")


async def test_each_statement_acts_as_the_actor_of_its_context(database: Database) -> None:
    _postgresql_only(database)
    user, org = uuid.uuid4(), uuid.uuid4()
    async with database.read() as session:
        before = (await session.execute(QUERY_ACTOR)).one()  # the connecting role
        with acting_as(DbActor(user_id=user)):
            as_user = (await session.execute(QUERY_ACTOR)).one()
            with acting_as(DbActor(user_id=user, org_id=org)):
                in_org = (await session.execute(QUERY_ACTOR)).one()
            back = (await session.execute(QUERY_ACTOR)).one()
        after = (await session.execute(QUERY_ACTOR)).one()
    assert before[0] != RLS_ROLE
    assert tuple(as_user) == (RLS_ROLE, str(user), "")
    assert tuple(in_org) == (RLS_ROLE, str(user), str(org))
    assert tuple(back) == (RLS_ROLE, str(user), "")
    assert tuple(after) == tuple(before)


class _Undone(Exception):
    pass


async def test_a_rolled_back_savepoint_does_not_leave_the_previous_actor_in_force(
    database: Database,
) -> None:
    """Rolling back to a savepoint undoes the settings made since; the next statement of
    the new actor's context sets them again."""
    _postgresql_only(database)
    first, second = DbActor(user_id=uuid.uuid4()), DbActor(user_id=uuid.uuid4())
    async with database.transaction() as session:
        with acting_as(first):
            await session.execute(QUERY_ACTOR)
            with acting_as(second):
                with contextlib.suppress(_Undone):
                    async with session.begin_nested():
                        await session.execute(QUERY_ACTOR)
                        raise _Undone
                after = (await session.execute(QUERY_ACTOR)).one()
    assert after[1] == str(second.user_id)


async def test_an_idle_pooled_connection_that_died_is_replaced_before_use(
    database: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _postgresql_only(database)
    pool = Database.from_settings(settings)
    try:

        async def backend() -> int:
            async with pool.read() as session:
                return int(await session.scalar(sa.text("SELECT pg_backend_pid()")) or 0)

        async def kill(pid: int) -> None:
            async with database.read() as session:  # another pool
                await session.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

        # Used a moment ago: not pinged, so a connection killed meanwhile fails its request
        # once (the window the setting accepts), and the next request gets a new one.
        killed = await backend()
        await kill(killed)
        with pytest.raises(sa.exc.DBAPIError):
            await backend()
        replaced = await backend()
        assert replaced != killed

        # Idle longer than the threshold: pinged at checkout, replaced before use.
        monkeypatch.setattr(database_module, "PING_AFTER_IDLE_SECONDS", 0.0)
        await kill(replaced)
        assert await backend() not in (killed, replaced, 0)
    finally:
        await pool.dispose()
