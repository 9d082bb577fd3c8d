"""Shared fixtures: a migrated database (SQLite, or PostgreSQL via TEST_DATABASE_URL),
the app with its lifespan running, an httpx client over ASGI, and actors with tokens."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app import migrate
from app.auth import issue_token
from app.core.config import Settings
from app.core.database import Database
from app.main import create_app
from app.tables import Base
from tests.helpers.processes import temp_database

pytest_plugins = ["tests.helpers.scheduling"]

TEST_SECRET = "test-secret-" + "x" * 40


SERVICE_VARIABLES = frozenset(
    {name.upper() for name in Settings.model_fields}
    | {"COLLECTION_API_URL", "COLLECTION_API_TOKEN", "COLLECTION_API_ORG"}
)


@pytest.fixture(scope="session", autouse=True)
def _no_service_environment() -> Iterator[None]:
    """The service's settings exported in the shell running the tests (DATABASE_URL,
    SCHEDULE_MISFIRE_GRACE_SECONDS, ...) reach no test: each test sets what it needs."""
    with pytest.MonkeyPatch.context() as patch:
        for name in SERVICE_VARIABLES & set(os.environ):
            patch.delenv(name)
        yield


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, empty database for this test session."""
    base = os.environ.get("TEST_DATABASE_URL")
    if base:
        with temp_database(base, "suite") as url:
            yield url
    else:
        path = tmp_path_factory.mktemp("db") / "test.db"
        yield f"sqlite+aiosqlite:///{path}"


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings of the app under test (the environment and .env are ignored)."""
    # The schedule engine is off in the shared app: tests fire schedules themselves, with
    # an injected clock, and start their own engine where the timing itself is tested.
    return make_settings(
        database_url=database_url,
        data_dir=tmp_path_factory.mktemp("data"),
        jwt_secret=TEST_SECRET,
        scheduler_enabled=False,
    )


def make_settings(**overrides: Any) -> Settings:
    """Settings from keyword arguments, over the environment the test set (the shell's
    service settings are removed for the session) and never a .env file."""
    return Settings(_env_file=None, **overrides)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The application, migrated and started once for the session."""
    await asyncio.to_thread(migrate.upgrade, settings)
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
def database(app: FastAPI) -> Database:
    """The app's database handle."""
    db: Database = app.state.instance.database
    return db


@pytest.fixture(autouse=True)
async def _clean_tables(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Tests that use the app leave empty tables behind them."""
    if "app" not in request.fixturenames:
        yield
        return
    db: Database = request.getfixturevalue("database")
    yield
    # A run still executing (a cancel saving its calls in flight) would write into the
    # tables being emptied: give it a moment to end first.
    executor = request.getfixturevalue("app").state.instance.executor
    for _ in range(500):
        if not executor.running:
            break
        await asyncio.sleep(0.01)
    async with db.transaction() as session:
        for table in reversed(Base.metadata.sorted_tables):
            await session.execute(sa.delete(table))


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in-process."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@dataclass
class Actor:
    """A user with a token; `headers` are what their requests send."""

    user_id: uuid.UUID
    email: str
    token: str
    org_id: uuid.UUID | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **self.extra_headers}


class Actors:
    """Creates users, organizations and memberships through the public API."""

    def __init__(self, client: httpx.AsyncClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    def user(self, email: str | None = None) -> Actor:
        """A user with a valid token (provisioned on their first request)."""
        user_id = uuid.uuid4()
        email = email or f"user-{user_id.hex[:8]}@example.com"
        token = issue_token(self.settings, user_id=user_id, email=email, ttl_seconds=3600)
        return Actor(user_id, email, token)

    async def admin(self, org_name: str = "Acme") -> Actor:
        """A user who created an organization (so is its admin)."""
        actor = self.user()
        response = await self.client.post("/orgs", json={"name": org_name}, headers=actor.headers)
        assert response.status_code == 201, response.text
        actor.org_id = uuid.UUID(response.json()["id"])
        return actor

    async def member(self, admin: Actor, role: str) -> Actor:
        """A user added to `admin`'s organization with `role`."""
        actor = self.user()
        await self.client.get("/me", headers=actor.headers)  # first sign-in provisions them
        response = await self.client.post(
            "/orgs/current/members",
            json={"email": actor.email, "role": role},
            headers=admin.headers,
        )
        assert response.status_code == 201, response.text
        actor.org_id = admin.org_id
        return actor


@pytest.fixture
def actors(client: httpx.AsyncClient, settings: Settings) -> Actors:
    """Factory of users and organizations."""
    return Actors(client, settings)


@pytest.fixture
def repo_root() -> Path:
    """The monorepo root (where the Makefile is)."""
    return Path(__file__).resolve().parents[3]
