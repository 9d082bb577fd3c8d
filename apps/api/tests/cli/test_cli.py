"""The `collection-api` command: help, tokens the server accepts, bootstrap."""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path

import jwt
import pytest
from click.testing import CliRunner

from app.cli import local_user_id, main

SECRET = "cli-test-secret-" + "z" * 32


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)  # no stray .env from the developer's checkout
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return CliRunner(env={"JWT_SECRET": SECRET, "DATA_DIR": str(tmp_path / "data")})


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["serve"],
        ["worker"],
        ["migrate"],
        ["token"],
        ["bootstrap"],
        ["sign-in-link"],
        ["runs"],
        ["runs", "watch"],
        ["runs", "export"],
    ],
    ids=lambda c: " ".join(c),
)
def test_every_command_has_help(runner: CliRunner, command: list[str]) -> None:
    result = runner.invoke(main, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage: " in result.output
    assert len(result.output.splitlines()) > 3


def test_token_is_accepted_by_the_verifier_rules(runner: CliRunner) -> None:
    result = runner.invoke(main, ["token", "--email", "Ana@Example.com", "--ttl", "120"])
    assert result.exit_code == 0, result.output
    claims = jwt.decode(
        result.output.strip(), SECRET, algorithms=["HS256"], audience="authenticated"
    )
    assert claims["email"] == "ana@example.com"
    assert claims["sub"] == str(local_user_id("ana@example.com"))
    assert claims["exp"] - claims["iat"] == 120


def test_token_for_the_local_operator(runner: CliRunner) -> None:
    """The address one-time links give the operator is one `token` accepts (the server
    does: it is a local address)."""
    result = runner.invoke(main, ["token", "--email", "admin@localhost"])
    assert result.exit_code == 0, result.output
    claims = jwt.decode(
        result.output.strip(), SECRET, algorithms=["HS256"], audience="authenticated"
    )
    assert claims["email"] == "admin@localhost"


def test_token_with_explicit_sub(runner: CliRunner) -> None:
    sub = uuid.uuid4()
    result = runner.invoke(main, ["token", "--email", "a@example.com", "--sub", str(sub)])
    claims = jwt.decode(
        result.output.strip(), SECRET, algorithms=["HS256"], audience="authenticated"
    )
    assert claims["sub"] == str(sub)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["token", "--email", "nope"], "is not a valid email address"),
        (["token", "--email", "a b@example.com"], "is not a valid email address"),
        (["sign-in-link", "--email", "<a@b>"], "is not a valid email address"),
        (["token", "--email", "a@example.com", "--sub", "x"], "is not a valid UUID"),
        (["token", "--email", "a@example.com", "--ttl", "0"], "0 is not in the range x>=1"),
        (["bootstrap", "--org", "  ", "--email", "a@example.com"], "must not be empty"),
        (["bootstrap", "--org", "Acme\x00", "--email", "a@example.com"], "control character"),
        (["token", "--email", "\u202eana@example.com"], "must not contain a text-direction"),
    ],
)
def test_bad_arguments_exit_2_with_message(
    runner: CliRunner, args: list[str], message: str
) -> None:
    result = runner.invoke(main, args)
    assert result.exit_code == 2
    assert message in result.output


def test_bad_configuration_is_a_clear_error(runner: CliRunner) -> None:
    result = runner.invoke(main, ["token", "--email", "a@example.com"], env={"JWT_SECRET": "short"})
    assert result.exit_code == 1
    assert "JWT_SECRET: Value error, JWT_SECRET must be a random string" in result.output


@pytest.mark.parametrize(
    ("command", "role", "message"),
    [
        (["serve"], "worker", "start a worker with `collection-api worker`"),
        (["worker"], "api", "INSTANCE_ROLE=api: a worker executes runs"),
        (["serve", "--role", "worker"], "all", "'worker' is not one of 'all', 'api'"),
    ],
)
def test_a_role_the_command_cannot_take_is_refused_before_anything_starts(
    runner: CliRunner, command: list[str], role: str, message: str
) -> None:
    result = runner.invoke(main, command, env={"INSTANCE_ROLE": role})
    assert result.exit_code in (1, 2)
    assert message in result.output
    assert not (Path("data") / "collection.db").exists()  # nothing migrated, nothing served


def test_a_worker_whose_probe_port_is_taken_says_so(runner: CliRunner) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = runner.invoke(main, ["worker", "--health-port", str(port)])
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port} for the probes" in result.output
    assert "choose another --health-port" in result.output


def test_bootstrap_creates_org_and_admin_idempotently(runner: CliRunner) -> None:
    first = runner.invoke(main, ["bootstrap", "--org", "Acme", "--email", "boss@example.com"])
    assert first.exit_code == 0, first.output
    created = json.loads(first.stdout)
    assert set(created) == {"org_id", "user_id", "token"}
    assert created["user_id"] == str(local_user_id("boss@example.com"))
    claims = jwt.decode(created["token"], SECRET, algorithms=["HS256"], audience="authenticated")
    assert claims["sub"] == created["user_id"]

    again = json.loads(
        runner.invoke(main, ["bootstrap", "--org", "Acme", "--email", "boss@example.com"]).stdout
    )
    assert (again["org_id"], again["user_id"]) == (created["org_id"], created["user_id"])
    other = json.loads(
        runner.invoke(main, ["bootstrap", "--org", "Beta", "--email", "boss@example.com"]).stdout
    )
    assert other["org_id"] != created["org_id"]
    assert other["user_id"] == created["user_id"]


def test_describe_progress_by_phase() -> None:
    from app.cli_runs import describe_progress

    counters = {
        "categories_total": 4,
        "categories_done": 1,
        "products_found": 50,
        "products_searched": 0,
        "listings_found": 0,
        "sellers_found": 0,
    }
    fraction, line = describe_progress(
        {"status": "running", "phase": "amazon", "progress": counters}
    )
    assert fraction == 0.25
    assert "Amazon 1/4 categories" in line
    counters.update(categories_done=4, products_found=200, products_searched=50)
    fraction, line = describe_progress({"status": "paused", "phase": "ebay", "progress": counters})
    assert fraction == 0.25
    assert line.startswith("paused")
    assert "eBay 50/200 products" in line
