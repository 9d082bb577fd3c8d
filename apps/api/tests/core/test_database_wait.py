"""Waiting for the database at start-up: back-off, one line per attempt, a bounded wait,
and refusals that waiting cannot cure."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from app import migrate
from app.core.config import Settings
from tests.helpers.processes import free_port
from tests.helpers.settings import make_settings


class FakeTime:
    """A monotonic clock that only `sleep` moves."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def postgres_settings(**overrides: object) -> Settings:
    return make_settings(
        database_url="postgresql+asyncpg://postgres@db.example:6543/collection", **overrides
    )


def test_it_retries_with_back_off_until_the_database_answers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    answers: list[tuple[str, bool] | None] = [("connection refused", True)] * 5 + [None]

    async def connect_once(_settings: Settings, within: float) -> tuple[str, bool] | None:
        return answers.pop(0)

    monkeypatch.setattr(migrate, "_connect_once", connect_once)
    time = FakeTime()
    with caplog.at_level(logging.WARNING, logger="app.migrate"):
        migrate.wait_for_database(
            postgres_settings(database_connect_timeout_seconds=60),
            sleep=time.sleep,
            clock=time.clock,
        )
    assert answers == []
    assert time.sleeps == [1, 2, 4, 8, 8]
    assert caplog.messages == [
        f"waiting for the database at db.example:6543 (connection refused), retrying in {s} s"
        for s in (1, 2, 4, 8, 8)
    ]


def test_it_gives_up_after_the_timeout_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    async def connect_once(_settings: Settings, within: float) -> tuple[str, bool] | None:
        return ("host name not found", True)

    monkeypatch.setattr(migrate, "_connect_once", connect_once)
    time = FakeTime()
    with pytest.raises(migrate.DatabaseUnavailableError) as caught:
        migrate.wait_for_database(
            postgres_settings(database_connect_timeout_seconds=10),
            sleep=time.sleep,
            clock=time.clock,
        )
    assert time.sleeps == [1, 2, 4, 3]  # never past the deadline
    assert str(caught.value) == (
        "the database at db.example:6543 is not reachable (host name not found); gave up "
        "after 10 s (DATABASE_CONNECT_TIMEOUT_SECONDS); check DATABASE_URL and that the "
        "database is running"
    )


def test_a_refusal_waiting_cannot_cure_fails_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    async def connect_once(_settings: Settings, within: float) -> tuple[str, bool] | None:
        return ('password authentication failed for user "postgres"', False)

    monkeypatch.setattr(migrate, "_connect_once", connect_once)
    time = FakeTime()
    with pytest.raises(migrate.DatabaseUnavailableError, match="refused the connection"):
        migrate.wait_for_database(postgres_settings(), sleep=time.sleep, clock=time.clock)
    assert time.sleeps == []


def test_sqlite_needs_no_waiting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probes: list[float] = []

    async def connect_once(_settings: Settings, within: float) -> tuple[str, bool] | None:
        probes.append(within)
        return None

    monkeypatch.setattr(migrate, "_connect_once", connect_once)
    migrate.wait_for_database(make_settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/x.db"))
    assert probes == []  # a file, not a server: nothing to wait for


async def test_real_answers_are_told_apart() -> None:
    refused = make_settings(database_url=f"postgresql+asyncpg://u@127.0.0.1:{free_port()}/x")
    assert await migrate._connect_once(refused, 5) == ("connection refused", True)
    base = os.environ.get("TEST_DATABASE_URL", "")
    if not base.startswith("postgresql"):
        return  # the rest needs a PostgreSQL server
    assert await migrate._connect_once(make_settings(database_url=base), 5) is None
    stranger = make_url(base).set(username="nobody_at_all", password="x")
    reason, transient = await migrate._connect_once(  # type: ignore[misc]
        make_settings(database_url=stranger.render_as_string(hide_password=False)), 5
    )
    assert not transient
    assert "nobody_at_all" in reason
