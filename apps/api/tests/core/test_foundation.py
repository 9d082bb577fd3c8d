"""Settings, the data layer's portable types and SQLite set-up, logs and metrics."""

from __future__ import annotations

import json
import logging
import stat
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from pydantic import ValidationError

from app.core.config import load_or_create_secret
from app.core.database import Database
from app.core.observability import JsonFormatter, request_id_var
from app.tables import Organization
from tests.helpers.settings import TEST_SECRET, make_settings

# --- settings ------------------------------------------------------------------------


def test_secret_is_generated_once_private_and_reused(tmp_path: Path) -> None:
    settings = make_settings(data_dir=tmp_path / "data")
    secret = settings.jwt_signing_secret
    path = tmp_path / "data" / "jwt_secret"
    assert len(secret) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = make_settings(data_dir=tmp_path / "data").jwt_signing_secret
    assert again == secret
    assert [p.name for p in path.parent.iterdir()] == ["jwt_secret"]  # no temp files left


def test_different_data_dirs_get_different_secrets(tmp_path: Path) -> None:
    assert load_or_create_secret(tmp_path / "a" / "s") != load_or_create_secret(
        tmp_path / "b" / "s"
    )


@pytest.mark.parametrize("secret", ["secret", "changeme", "short-but-not-weak"])
def test_weak_secret_is_refused(secret: str) -> None:
    with pytest.raises(ValidationError, match="at least 32 characters"):
        make_settings(jwt_secret=secret)


def test_unknown_database_driver_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"sqlite\+aiosqlite:// or postgresql\+asyncpg://"):
        make_settings(database_url="postgresql://localhost/db")


def test_default_database_is_sqlite_under_data_dir(tmp_path: Path) -> None:
    settings = make_settings(data_dir=tmp_path)
    assert settings.effective_database_url == f"sqlite+aiosqlite:///{tmp_path}/collection.db"


def test_settings_come_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JWT_AUDIENCE", "my-audience")
    monkeypatch.setenv("SCHEDULER_ENABLED", "false")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    settings = make_settings()
    assert settings.jwt_audience == "my-audience"
    assert settings.scheduler_enabled is False
    assert settings.data_dir == tmp_path


# --- data layer ----------------------------------------------------------------------


async def test_timestamps_round_trip_as_aware_utc(database: Database) -> None:
    local = datetime(2027, 3, 14, 3, 0, tzinfo=timezone(timedelta(hours=-4)))
    async with database.transaction() as session:
        org = Organization(name="tz", created_at=local)
        session.add(org)
    async with database.read() as session:
        loaded = await session.scalar(
            sa.select(Organization.created_at).where(Organization.id == org.id)
        )
    assert loaded == local
    assert loaded is not None
    assert loaded.tzinfo is not None
    assert loaded.utcoffset() == timedelta(0)


async def test_naive_timestamp_is_refused(database: Database) -> None:
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        async with database.transaction() as session:
            session.add(Organization(name="naive", created_at=datetime(2027, 1, 1)))  # noqa: DTZ001


async def test_sqlite_pragmas(database: Database) -> None:
    if database.dialect != "sqlite":
        pytest.skip("SQLite only")
    async with database.read() as session:
        assert await session.scalar(sa.text("PRAGMA foreign_keys")) == 1
        assert await session.scalar(sa.text("PRAGMA journal_mode")) == "wal"
        assert await session.scalar(sa.text("PRAGMA busy_timeout")) == 30_000


async def test_foreign_keys_are_enforced(database: Database) -> None:
    from app.tables import CategoryPreset

    with pytest.raises(sa.exc.IntegrityError):
        async with database.transaction() as session:
            session.add(CategoryPreset(org_id=uuid.uuid4(), name="orphan", category_ids=["1"]))


async def test_deleting_org_cascades(database: Database) -> None:
    from app.tables import CategoryPreset

    async with database.transaction() as session:
        org = Organization(name="gone")
        session.add(org)
        await session.flush()
        session.add(CategoryPreset(org_id=org.id, name="p", category_ids=["1"]))
    async with database.transaction() as session:
        await session.execute(sa.delete(Organization).where(Organization.id == org.id))
    async with database.read() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(CategoryPreset)) == 0


# --- health, logs, metrics -----------------------------------------------------------


async def test_health_and_ready(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).json()["status"] == "ok"
    ready = await client.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "schema": "ok"}}


async def test_ready_is_503_when_schema_is_behind(app: FastAPI, client: httpx.AsyncClient) -> None:
    head = app.state.schema_head
    app.state.schema_head = "9999"
    try:
        response = await client.get("/ready")
    finally:
        app.state.schema_head = head
    assert response.status_code == 503
    assert response.json()["checks"]["schema"] == f"at {head}, expected 9999: run migrate"


async def test_request_id_is_kept_or_generated(client: httpx.AsyncClient) -> None:
    kept = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert kept.headers["x-request-id"] == "abc-123"
    generated = await client.get("/health", headers={"X-Request-ID": "bad id with spaces\n"})
    assert generated.headers["x-request-id"] != "bad id with spaces\n"
    assert len(generated.headers["x-request-id"]) == 32


async def test_metrics_count_requests_by_route_template(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    await client.get(f"/collection/presets/{uuid.uuid4()}")
    text = (await client.get("/metrics")).text
    assert (
        'http_requests_total{method="GET",route="/collection/presets/{preset_id}",status="401"}'
        in text
    )
    assert "http_request_duration_seconds_bucket" in text


async def test_unhandled_error_is_json_500_with_request_id(
    settings: object, caplog: pytest.LogCaptureFixture
) -> None:
    from app.main import create_app

    application = create_app(settings)  # type: ignore[arg-type]

    @application.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        with caplog.at_level(logging.ERROR):
            response = await http.get("/boom", headers={"X-Request-ID": "req-1"})
    assert response.status_code == 500
    assert response.json() == {"detail": "internal server error", "request_id": "req-1"}
    assert "secret internals" not in response.text
    assert any("unhandled error" in r.getMessage() for r in caplog.records)


def test_json_log_lines_carry_request_id() -> None:
    token = request_id_var.set("rid-9")
    try:
        record = logging.LogRecord("app.x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
        record.request_id = request_id_var.get()
        record.run_id = "r1"
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["message"] == "hello you"
    assert line["request_id"] == "rid-9"
    assert line["run_id"] == "r1"
    assert line["level"] == "info"


def test_openapi_documents_every_route_with_auth(app: FastAPI) -> None:
    schema = app.openapi()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    paths = schema["paths"]
    for path in ("/me", "/orgs", "/orgs/current/members", "/collection/presets/{preset_id}"):
        assert path in paths
    example = schema["components"]["schemas"]["PresetCreate"]["properties"]["category_ids"]
    assert example["examples"] == [["172282", "541966"]]
    assert TEST_SECRET not in json.dumps(schema)  # settings never leak into the schema


def test_utc_now_is_aware() -> None:
    from app.core.clock import utcnow

    assert utcnow().tzinfo is UTC
