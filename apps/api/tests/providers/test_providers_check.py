"""The real Keepa and eBay clients wired from the settings, and `collection-api providers
check` against the fakes on loopback."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from app.cli import main
from app.providers import build_providers
from app.providers.budget import PACIFIC, DailyCallBudget
from app.providers.ebay import EbayBrowseProvider
from app.providers.keepa import KeepaAmazonProvider
from tests.helpers.ebay import real_settings
from tests.helpers.fake_marketplaces import (
    FakeEbay,
    FakeKeepa,
)
from tests.helpers.settings import make_settings

# --- wiring and `providers check` ------------------------------------------------------------


async def test_build_providers_wires_the_real_clients(
    keepa: FakeKeepa, ebay: FakeEbay, http: httpx.AsyncClient
) -> None:
    settings = make_settings(
        **real_settings(
            keepa,
            ebay,
            keepa_domain=2,
            keepa_bestsellers_range=30,
            ebay_marketplace_id="EBAY_GB",
            ebay_daily_call_limit=42,
            ebay_title_match_threshold=0.8,
        )
    )
    amazon, ebay_provider = build_providers(settings, http=http)
    assert (amazon.name, ebay_provider.name) == ("keepa", "ebay")
    keepa_client = amazon.inner  # type: ignore[attr-defined]
    ebay_client = ebay_provider.inner  # type: ignore[attr-defined]
    assert isinstance(keepa_client, KeepaAmazonProvider)
    assert (keepa_client.domain, keepa_client.bestsellers_range) == (2, 30)
    assert keepa_client.currency == "GBP"
    assert isinstance(ebay_client, EbayBrowseProvider)
    assert (ebay_client.marketplace_id, ebay_client.budget.limit) == ("EBAY_GB", 42)
    assert isinstance(ebay_client.budget, DailyCallBudget)  # no database: this process counts
    assert ebay_client.title_match_threshold == 0.8
    assert ebay_client.keyword_fallback
    with pytest.raises(ValueError, match=r"shared httpx\.AsyncClient"):
        build_providers(settings)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"amazon_provider": "keepa"}, "AMAZON_PROVIDER=keepa needs KEEPA_API_KEY"),
        (
            {"amazon_provider": "keepa", "keepa_api_key": "  "},
            "AMAZON_PROVIDER=keepa needs KEEPA_API_KEY",
        ),
        ({"ebay_provider": "ebay"}, "EBAY_PROVIDER=ebay needs EBAY_CLIENT_ID"),
        (
            {"ebay_provider": "ebay", "ebay_client_id": "app"},
            "EBAY_PROVIDER=ebay needs EBAY_CLIENT_SECRET",
        ),
        ({"keepa_domain": 7}, "keepa_domain"),
        ({"keepa_bestsellers_range": 60}, "keepa_bestsellers_range"),
    ],
)
def test_missing_credentials_are_a_clear_configuration_error(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make_settings(**overrides)


@pytest.fixture
def cli(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's checkout
    return CliRunner(env={"DATA_DIR": str(tmp_path)})


def env_of(settings: dict[str, Any]) -> dict[str, str]:
    return {name.upper(): str(value) for name, value in settings.items()}


def test_providers_check_with_the_sample_providers(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AMAZON_PROVIDER", "EBAY_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    result = cli.invoke(main, ["providers", "check"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "amazon sample  ok      offline sample data: no credentials",
        "ebay   sample  ok      offline sample data: no credentials",
    ]


def test_providers_check_reports_the_quota_left(
    cli: CliRunner, keepa: FakeKeepa, ebay: FakeEbay
) -> None:
    keepa.set_tokens(1180, refill_rate=20, refill_seconds=60)
    result = cli.invoke(main, ["providers", "check"], env=env_of(real_settings(keepa, ebay)))
    assert result.exit_code == 0, result.output
    amazon_line, ebay_line = result.output.splitlines()
    assert amazon_line.startswith("amazon keepa   ok      KEEPA_API_KEY accepted; 1180 tokens left")
    assert "20 more per minute" in amazon_line
    assert ebay_line.startswith("ebay   ebay    ok      EBAY_CLIENT_ID/SECRET accepted")
    assert "eBay reports 5000 of 5000 Browse API calls left today" in ebay_line
    assert "calls today unknown (database not migrated); at most 5000 a day" in ebay_line
    assert ebay_line.endswith("(EBAY_DAILY_CALL_LIMIT)")
    assert keepa.tokens == 1180
    assert ebay.calls(FakeEbay.SEARCH_PATH) == []


def test_providers_check_counts_the_calls_of_every_instance(
    cli: CliRunner, tmp_path: Any, keepa: FakeKeepa, ebay: FakeEbay
) -> None:
    env = env_of(real_settings(keepa, ebay, ebay_daily_call_limit=900))
    assert cli.invoke(main, ["migrate"], env=env).exit_code == 0
    today = datetime.now(UTC).astimezone(PACIFIC).date()
    with sqlite3.connect(tmp_path / "collection.db") as db:  # as two replicas left it
        db.execute(
            "INSERT INTO provider_call_counts VALUES ('ebay', ?, 120, ?)",
            (today.isoformat(), datetime.now(UTC).replace(tzinfo=None).isoformat(" ")),
        )
    result = cli.invoke(main, ["providers", "check"], env=env)
    assert result.exit_code == 0, result.output
    ebay_line = result.output.splitlines()[1]
    assert ebay_line.endswith(
        "this service made 120 of at most 900 calls today (EBAY_DAILY_CALL_LIMIT)"
    )


def test_providers_check_fails_on_bad_credentials(
    cli: CliRunner, keepa: FakeKeepa, ebay: FakeEbay
) -> None:
    settings = real_settings(keepa, ebay, keepa_api_key="wrong", ebay_client_secret="wrong")
    result = cli.invoke(main, ["providers", "check"], env=env_of(settings))
    assert result.exit_code == 1
    amazon_line, ebay_line = result.output.splitlines()
    assert "FAILED" in amazon_line
    assert "Invalid API key" in amazon_line
    assert "FAILED" in ebay_line
    assert "invalid_client" in ebay_line


@pytest.mark.parametrize("command", [["providers"], ["providers", "check"]])
def test_providers_commands_have_help(cli: CliRunner, command: list[str]) -> None:
    result = cli.invoke(main, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage: " in result.output


def test_providers_check_names_missing_credentials(cli: CliRunner) -> None:
    result = cli.invoke(main, ["providers", "check"], env={"AMAZON_PROVIDER": "keepa"})
    assert result.exit_code == 1
    assert "AMAZON_PROVIDER=keepa needs KEEPA_API_KEY" in result.output


def test_runs_watch_shows_a_quota_wait() -> None:
    from app.cli_runs import describe_progress

    counters = dict.fromkeys(RUN_COUNTERS, 1)
    run = {"status": "running", "phase": "ebay", "progress": counters}
    assert "waiting" not in describe_progress({**run, "resumes_at": None})[1]
    _, line = describe_progress({**run, "resumes_at": "2027-07-02T07:00:00Z"})
    assert line.endswith("; waiting for provider quota until 2027-07-02T07:00:00Z")
    limit = "eBay's daily call limit (eBay reports 0 of 5000 calls left)"
    _, line = describe_progress({**run, "resumes_at": "2027-07-02T07:00:00Z", "waiting_for": limit})
    assert line.endswith(f"; waiting for {limit} until 2027-07-02T07:00:00Z")


RUN_COUNTERS = (
    "categories_total",
    "categories_done",
    "products_found",
    "products_searched",
    "listings_found",
    "sellers_found",
)
