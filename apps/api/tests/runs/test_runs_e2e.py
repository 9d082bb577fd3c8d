"""A real server killed with SIGKILL in the middle of a run: after a restart the run is
taken over from its checkpoint and ends with exactly the rows of an uninterrupted run."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.databases import temp_database
from tests.helpers.processes import CLI, Server, bootstrap, clean_env, wait_healthy
from tests.helpers.runs import created_at, expected_listings

pytestmark = pytest.mark.slow

CATEGORIES = ["172282", "541966", "1055398", "3760911", "165793011", "2619525011"]
PER_CATEGORY = 20
SECRET = "e2e-secret-" + "k" * 40


@pytest.fixture
def run_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    settings = {
        "DATA_DIR": str(tmp_path / "data"),
        "JWT_SECRET": SECRET,
        "SAMPLE_PROVIDER_LATENCY_MS": "30",
        "RUN_PROVIDER_CONCURRENCY": "2",
        "RUN_LEASE_SECONDS": "2",
        "RUN_SWEEP_SECONDS": "0.5",
    }
    base = os.environ.get("TEST_DATABASE_URL")
    if base:
        with temp_database(base, "kill") as url:
            yield clean_env(DATABASE_URL=url, **settings)
    else:
        yield clean_env(**settings)


def _poll(url: str, headers: dict[str, str], predicate: Any, within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        run: dict[str, Any] = httpx.get(url, headers=headers).json()
        if predicate(run):
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run never reached the expected state: {run}")
        time.sleep(0.05)


def test_sigkill_mid_run_then_restart_completes_with_exact_rows(
    run_env: dict[str, str], tmp_path: Path
) -> None:
    first = Server(run_env, tmp_path, "first")
    try:
        wait_healthy(first.url, first.process)
        token = bootstrap(run_env)["token"]
        headers = {"Authorization": f"Bearer {token}"}
        body = {"category_ids": CATEGORIES, "products_per_category": PER_CATEGORY}
        run = httpx.post(f"{first.url}/collection/runs", json=body, headers=headers).json()
        run_url = f"{first.url}/collection/runs/{run['id']}"
        assert httpx.post(f"{run_url}/start", headers=headers).status_code == 200
        before = _poll(
            run_url, headers, lambda r: r["progress"]["products_searched"] >= 10, within=60
        )
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
    finally:
        first.stop()
    assert before["status"] == "running"
    assert before["progress"]["products_searched"] < len(CATEGORIES) * PER_CATEGORY

    second = Server(run_env, tmp_path, "second")
    try:
        wait_healthy(second.url, second.process)
        run_url = f"{second.url}/collection/runs/{run['id']}"
        done = _poll(run_url, headers, lambda r: r["status"] != "running", within=120)
        assert done["status"] == "completed", done
        assert done["progress"]["products_searched"] == len(CATEGORIES) * PER_CATEGORY

        watch = subprocess.run(
            [CLI, "runs", "--url", second.url, "--token", token, "watch", run["id"]],
            env=run_env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert watch.returncode == 0, watch.stderr
        assert "completed" in watch.stdout.decode()
        out = tmp_path / "listings.csv"
        export = subprocess.run(
            [
                *(CLI, "runs", "--url", second.url, "--token", token),
                *("export", run["id"], "--kind", "listings", "-o", str(out)),
            ],
            env=run_env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert export.returncode == 0, export.stderr
    finally:
        second.stop()
    assert "taken over" in second.logs()

    rows = list(csv.DictReader(io.StringIO(out.read_text(), newline="")))
    stored = [(r["asin"], r["item_id"], r["seller_username"]) for r in rows]
    assert len(stored) == len(set(stored)), "a resumed run must not duplicate rows"
    expected = expected_listings(CATEGORIES, PER_CATEGORY, 20, as_of=created_at(run))
    assert set(stored) == asyncio.run(expected)
    assert done["progress"]["listings_found"] == len(stored)


def test_runs_cli_needs_a_token(tmp_path: Path) -> None:
    result = subprocess.run(
        [CLI, "runs", "watch", "00000000-0000-0000-0000-000000000000"],
        env=clean_env(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert b"COLLECTION_API_TOKEN" in result.stderr


def test_runs_cli_reports_api_errors(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            *(CLI, "runs", "--url", "http://127.0.0.1:9", "--token", "t"),
            *("watch", "00000000-0000-0000-0000-000000000000"),
        ],
        env=clean_env(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert b"cannot reach http://127.0.0.1:9" in result.stderr
