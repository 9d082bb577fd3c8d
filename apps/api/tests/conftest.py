"""Shared fixtures: a migrated database (SQLite, or PostgreSQL via TEST_DATABASE_URL),
the app with its lifespan running, an httpx client over ASGI, actors with tokens, an
organization's admin, browsers on the app, and the injected clock of the schedule tests.

Only fixtures live here; the helpers they use are in tests/helpers/."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app import migrate
from app.core.config import Settings
from app.core.database import Database
from app.main import create_app
from app.runs.lifecycle import RunLifecycle
from app.scheduling.schedules import ScheduleService
from app.tables import Base
from tests.helpers.actors import Actor, Actors
from tests.helpers.browser import BrowserFactory, browsers
from tests.helpers.databases import temp_database
from tests.helpers.scheduling import EPOCH, FakeClock, Org, make_org
from tests.helpers.settings import SERVICE_VARIABLES, TEST_SECRET, make_settings


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


@pytest.fixture
def actors(client: httpx.AsyncClient, settings: Settings) -> Actors:
    """Factory of users and organizations."""
    return Actors(client, settings)


@pytest.fixture
def repo_root() -> Path:
    """The monorepo root (where the Makefile is)."""
    return Path(__file__).resolve().parents[3]


@pytest.fixture
async def admin(actors: Actors) -> Actor:
    """The admin of a new organization."""
    return await actors.admin()


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[BrowserFactory]:
    """Opens browsers, each with its own cookie jar; `await browser(actor)` signs in."""
    async with browsers(app) as open_browser:
        yield open_browser


@pytest.fixture
def clock(app: FastAPI) -> Iterator[FakeClock]:
    """Both the schedule and the run services read this clock during the test."""
    fake = FakeClock(EPOCH)
    schedules: ScheduleService = app.state.instance.schedules
    collection: RunLifecycle = app.state.instance.runs
    saved = schedules.clock, collection.clock
    schedules.clock = collection.clock = fake
    yield fake
    schedules.clock, collection.clock = saved


@pytest.fixture
def schedules(app: FastAPI) -> ScheduleService:
    service: ScheduleService = app.state.instance.schedules
    return service


@pytest.fixture
async def org(client: httpx.AsyncClient, actors: Actors) -> Org:
    return await make_org(client, actors)
