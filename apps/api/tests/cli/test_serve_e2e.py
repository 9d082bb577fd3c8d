"""Real processes: `collection-api serve` from nothing, restart, and replicas starting together."""

from __future__ import annotations

import os
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.helpers.databases import temp_database
from tests.helpers.processes import (
    CLI,
    Server,
    bootstrap,
    clean_env,
    free_port,
    tcp_forwarder,
    wait_healthy,
)

pytestmark = pytest.mark.slow


class _Stream(threading.Thread):
    """Reads an event stream's lines until it closes, from the moment it has begun."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.url, self.headers, self.lines = url, headers, list[str]()
        self.begun = threading.Event()
        self.start()
        assert self.begun.wait(10), "the stream did not begin"

    def run(self) -> None:
        with httpx.stream("GET", self.url, headers=self.headers, timeout=60) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                self.lines.append(line)
                self.begun.set()


@pytest.fixture
def service_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment of a brand-new deployment: empty data dir, no JWT_SECRET."""
    base = os.environ.get("TEST_DATABASE_URL")
    if base:
        with temp_database(base, "e2e") as url:
            yield clean_env(DATA_DIR=str(tmp_path / "data"), DATABASE_URL=url)
    else:
        yield clean_env(DATA_DIR=str(tmp_path / "data"))


def test_fresh_deployment_serves_survives_restart_and_keeps_its_secret(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    server = Server(service_env, tmp_path)
    try:
        wait_healthy(server.url, server.process)
        assert httpx.get(f"{server.url}/ready").json()["status"] == "ready"
        secret_file = Path(service_env["DATA_DIR"]) / "jwt_secret"
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600

        boot = bootstrap(service_env)
        headers = {"Authorization": f"Bearer {boot['token']}"}
        created = httpx.post(
            f"{server.url}/collection/presets",
            json={"name": "Electronics", "category_ids": ["172282"]},
            headers=headers,
        )
        assert created.status_code == 201, created.text
        run = httpx.post(
            f"{server.url}/collection/runs",
            json={"preset_id": created.json()["id"]},
            headers=headers,
        )
        assert run.status_code == 201, run.text
        stream = _Stream(f"{server.url}/collection/runs/{run.json()['id']}/events", headers)
    finally:
        started = time.monotonic()
        server.stop()
        stopping = time.monotonic() - started
    # The pending run's stream stayed open; stopping ended it at once (without `end`, so
    # its reader reconnects elsewhere) rather than wait SHUTDOWN_DRAIN_SECONDS (20 s).
    stream.join(timeout=5)
    assert stream.lines[:1] == ["event: run"]
    assert "event: end" not in stream.lines
    assert stopping < 10, stopping
    assert "Traceback" not in server.logs()

    restarted = Server(service_env, tmp_path, "restarted")
    try:
        wait_healthy(restarted.url, restarted.process)
        listing = httpx.get(f"{restarted.url}/collection/presets", headers=headers)
        assert listing.status_code == 200  # same secret after restart: the token still works
        assert [p["name"] for p in listing.json()["items"]] == ["Electronics"]
    finally:
        restarted.stop()
    # The access log line is written as the response finishes, so read it after stopping.
    access_lines = [line for line in restarted.logs().splitlines() if "app.access" in line]
    assert any(
        "request_id=" in line and "/collection/presets 200" in line for line in access_lines
    ), access_lines


def test_replicas_starting_at_once_share_one_database(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    """Two `serve` processes start together on one empty database: both migrate and serve."""
    servers = [Server(service_env, tmp_path, f"replica{i}") for i in range(2)]
    try:
        for server in servers:
            wait_healthy(server.url, server.process, timeout=60)
        boot = bootstrap(service_env)
        headers = {"Authorization": f"Bearer {boot['token']}"}
        body = {"name": "shared", "category_ids": ["1"]}
        assert (
            httpx.post(
                f"{servers[0].url}/collection/presets", json=body, headers=headers
            ).status_code
            == 201
        )
        seen = httpx.get(f"{servers[1].url}/collection/presets", headers=headers).json()
        assert [p["name"] for p in seen["items"]] == ["shared"]
    finally:
        for server in servers:
            server.stop()
    for server in servers:
        assert "Traceback" not in server.logs(), server.logs()


def test_serve_waits_a_bounded_time_for_a_database_that_is_down(tmp_path: Path) -> None:
    port = free_port()  # nobody listens there: connections are refused
    env = clean_env(
        DATA_DIR=str(tmp_path / "data"),
        DATABASE_URL=f"postgresql+asyncpg://postgres@127.0.0.1:{port}/collection",
        DATABASE_CONNECT_TIMEOUT_SECONDS="2",
    )
    result = subprocess.run(
        [CLI, "serve", "--port", str(free_port())], env=env, capture_output=True, timeout=60
    )
    output = (result.stdout + result.stderr).decode()
    lines = output.splitlines()
    assert result.returncode != 0
    assert "Traceback" not in output
    waiting = f"waiting for the database at 127.0.0.1:{port} (connection refused), retrying in"
    assert [line for line in lines if waiting not in line] == [lines[-1]], output
    assert 1 <= len(lines) - 1 <= 3  # one line per attempt, then the verdict
    assert lines[-1] == (
        f"Error: the database at 127.0.0.1:{port} is not reachable (connection refused); "
        "gave up after 2 s (DATABASE_CONNECT_TIMEOUT_SECONDS); check DATABASE_URL and that "
        "the database is running"
    )


def test_serve_starts_once_the_database_comes_up(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    if "DATABASE_URL" not in service_env:
        pytest.skip("needs PostgreSQL (TEST_DATABASE_URL); SQLite is never down")
    database = make_url(service_env["DATABASE_URL"])
    port = free_port()  # the database's address while it is "down"
    env = {
        **service_env,
        "DATABASE_URL": database.set(host="127.0.0.1", port=port).render_as_string(
            hide_password=False
        ),
        "DATABASE_CONNECT_TIMEOUT_SECONDS": "120",
    }
    server = Server(env, tmp_path)
    try:
        waiting = f"waiting for the database at 127.0.0.1:{port} (connection refused)"
        for _ in range(600):
            if waiting in server.logs() or server.process.poll() is not None:
                break
            time.sleep(0.05)
        assert waiting in server.logs(), server.logs()
        with tcp_forwarder(port, database.host or "127.0.0.1", database.port or 5432):
            wait_healthy(server.url, server.process, timeout=60)
            assert httpx.get(f"{server.url}/ready").json()["status"] == "ready"
            server.stop()
    finally:
        server.stop()
    assert "Traceback" not in server.logs(), server.logs()
