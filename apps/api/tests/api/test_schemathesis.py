"""The OpenAPI document against the running service: schemathesis generates requests from
it (every check, the stateful links between operations, a fixed seed, a few hundred cases)
as an organization's admin, and fails on any 5xx or any answer the document does not
describe."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import pytest

from tests.helpers.databases import temp_database
from tests.helpers.processes import CLI, VENV_BIN, clean_env, free_port, wait_healthy

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).with_name("schemathesis.toml")
CASES_PER_OPERATION = 10
"""With the examples and the stateful scenarios, about 400 requests: a bounded run (the
coverage phase, 2,000 more, stays out of the gate)."""
SECRET = "schemathesis-" + "s" * 40


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    """A real `collection-api serve` on an empty database, its admin's headers, its log."""
    base = os.environ.get("TEST_DATABASE_URL")
    sqlite = f"sqlite+aiosqlite:///{tmp_path / 'fuzz.db'}"
    with temp_database(base, "fuzz") if base else nullcontext(sqlite) as url:
        env = clean_env(
            DATA_DIR=str(tmp_path / "data"),
            DATABASE_URL=url,
            JWT_SECRET=SECRET,
            SAMPLE_PROVIDER_LATENCY_MS="0",
            LOG_LEVEL="WARNING",
        )
        port = free_port()
        log = tmp_path / "server.log"
        with log.open("wb") as output:
            server = subprocess.Popen(
                [CLI, "serve", "--port", str(port)], env=env, stdout=output, stderr=output
            )
        try:
            url_base = f"http://127.0.0.1:{port}"
            wait_healthy(url_base, server)
            boot = json.loads(
                subprocess.run(
                    [CLI, "bootstrap", "--org", "Fuzz", "--email", "admin@example.com"],
                    env=env,
                    capture_output=True,
                    check=True,
                    timeout=60,
                ).stdout
            )
            # POST /orgs makes the admin a member of several organizations: name one.
            headers = {"Authorization": f"Bearer {boot['token']}", "X-Org-Id": boot["org_id"]}
            yield url_base, headers, log
        finally:
            server.terminate()
            server.wait(timeout=15)


def test_the_api_answers_what_its_openapi_document_says(
    service: tuple[str, dict[str, str], Path], tmp_path: Path
) -> None:
    url, headers, log = service
    command = [
        str(VENV_BIN / "schemathesis"),
        "--config-file",
        str(CONFIG),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--phases",
        "examples,fuzzing,stateful",
        "--max-examples",
        str(CASES_PER_OPERATION),
        "--generation-deterministic",
        "--workers",
        "1",
        "--no-color",
    ]
    for name, value in headers.items():
        command += ["--header", f"{name}: {value}"]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False
    )
    # On a failure: schemathesis's report (each case with a curl line) and the server's log,
    # where a 5xx left its traceback.
    assert result.returncode == 0, "\n".join(
        [result.stdout[-20_000:], result.stderr[-5_000:], log.read_text()[-10_000:]]
    )
