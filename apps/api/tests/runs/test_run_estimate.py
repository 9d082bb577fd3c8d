"""What a run needs of the providers and when it should finish: the figures of `plan`, and
the `estimate` of POST /collection/runs, POST /collection/runs/estimate and GET of a run,
scoped to the acting organization."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from app.core.database import Database
from app.providers.fair_share import ShareStatus, Taker
from app.runs.estimate import PlannedRun, keepa_tokens, plan
from tests.helpers.actors import Actor, Actors
from tests.helpers.budget import budgeted, org_with_run, terms
from tests.helpers.runs import finished_run

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)  # 04:00 in Pacific time
RESET = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)  # eBay's next day


def status(
    used: int, *, limit: int = 5000, mine: int = 0, cap: int | None = None, others: int = 0
) -> ShareStatus:
    """The day's budget: `used` calls of `limit`, `mine` by this organization, `others`
    organizations waiting for 1,000 calls each."""
    me = Taker(uuid.uuid4(), mine, 0, cap=cap)
    rivals = [Taker(uuid.uuid4(), 0, 1000) for _ in range(others)]
    return ShareStatus(terms(limit), used, me, rivals)


def test_without_a_daily_limit_only_the_pace_says_when() -> None:
    found = plan(500, now=NOW, status=None, seconds_per_call=2.0)
    assert (found.ebay_calls, found.ebay_daily_limit, found.fits_today) == (500, None, True)
    assert found.finishes_at == NOW + timedelta(seconds=1000)
    assert found.note == (
        "About 500 eBay calls; the eBay provider has no daily limit here: should finish at "
        "about 12:16 UTC."
    )
    unknown = plan(500, now=NOW, status=None)
    assert unknown.finishes_at is None
    assert unknown.note.endswith(
        "how long it takes is known once a run of the organization has completed."
    )


def test_a_run_that_fits_in_what_is_left_today() -> None:
    found = plan(500, now=NOW, status=status(1000), seconds_per_call=2.0, tokens=500)
    assert found.ebay_calls_left_today == 4000
    assert (found.org_daily_cap, found.sharing_organizations, found.fair_share_today) == (
        None,
        0,
        None,
    )
    assert (found.fits_today, found.budget_resets_at) == (True, RESET)
    assert found.finishes_at == NOW + timedelta(seconds=1000)
    assert found.note == (
        "About 500 eBay calls and 500 Keepa tokens; 4,000 of the 5,000 eBay calls a day are "
        "left today. Should finish at about 12:16 UTC."
    )
    running = plan(500, now=NOW, status=status(1000), remaining=timedelta(minutes=3))
    assert running.finishes_at == NOW + timedelta(minutes=3)  # its own pace, once it runs


def test_what_does_not_fit_today_continues_when_the_budget_resets() -> None:
    found = plan(500, now=NOW, status=status(4880), seconds_per_call=1.0)
    assert (found.ebay_calls_left_today, found.fits_today) == (120, False)
    assert found.finishes_at == RESET + timedelta(seconds=380)  # the other 380 tomorrow
    assert found.note == (
        "About 500 eBay calls; 120 of the 5,000 eBay calls a day are left today. Not today: "
        "the eBay budget resets at 08:00 UTC; should finish at about 2026-12-06 08:06 UTC."
    )
    days = plan(12_000, now=NOW, status=status(5000), seconds_per_call=1.0)
    assert days.finishes_at == RESET + timedelta(days=2, seconds=2000)  # 5,000 a day


def test_the_organizations_cap_limits_today_and_every_day() -> None:
    found = plan(100, now=NOW, status=status(1000, mine=250, cap=300), seconds_per_call=1.0)
    assert (found.org_daily_cap, found.org_calls_left_today, found.fits_today) == (
        300,
        50,
        False,
    )
    assert found.finishes_at == RESET + timedelta(seconds=50)
    assert "the organization's cap of 300 a day leaves it 50" in found.note
    week = plan(2000, now=NOW, status=status(0, cap=300), seconds_per_call=1.0)
    assert week.finishes_at == RESET + timedelta(days=5, seconds=200)  # 300 a day


def test_a_short_budget_is_shared_with_the_organizations_waiting_for_it() -> None:
    found = plan(600, now=NOW, status=status(4100, others=2), seconds_per_call=1.0)
    assert (found.sharing_organizations, found.fair_share_today, found.fits_today) == (
        2,
        300,
        False,
    )
    assert "2 other organizations wait for them too: this run's fair share is about 300" in (
        found.note
    )
    enough = plan(600, now=NOW, status=status(1000, others=2), seconds_per_call=1.0)
    assert (enough.sharing_organizations, enough.fair_share_today, enough.fits_today) == (
        0,
        None,
        True,
    )


def test_keepa_tokens_are_a_list_and_a_token_a_product_per_category_left() -> None:
    assert keepa_tokens(PlannedRun(categories_total=4, products_per_category=50)) == 400
    done = PlannedRun(categories_total=4, products_per_category=50, categories_done=3)
    assert keepa_tokens(done) == 100


# --- through the API ---------------------------------------------------------------------------


async def test_a_new_run_answers_with_its_estimate(
    client: httpx.AsyncClient, admin: Actor, app: FastAPI
) -> None:
    body = {"category_ids": ["1", "2", "3"], "products_per_category": 20}
    with budgeted(app, 1000):
        created = await client.post("/collection/runs", json=body, headers=admin.headers)
    assert created.status_code == 201, created.text
    estimate = created.json()["estimate"]
    assert estimate["ebay_calls"] == 60
    assert (estimate["ebay_daily_limit"], estimate["ebay_calls_left_today"]) == (1000, 1000)
    assert (estimate["fits_today"], estimate["finishes_at"]) == (True, None)
    assert estimate["note"].startswith("About 60 eBay calls; 1,000 of the 1,000 eBay calls")
    listed = await client.get("/collection/runs", headers=admin.headers)
    assert listed.json()["items"][0]["estimate"] is None  # in one run's answers only
    got = await client.get(f"/collection/runs/{created.json()['id']}", headers=admin.headers)
    assert got.json()["estimate"]["ebay_calls"] == 60
    assert got.json()["estimate"]["ebay_daily_limit"] is None  # the sample has no limit


async def test_estimating_creates_nothing_and_uses_the_runs_own_rules(
    client: httpx.AsyncClient, admin: Actor, app: FastAPI
) -> None:
    preset = await client.post(
        "/collection/presets",
        json={"name": "Toys", "category_ids": ["1", "2"]},
        headers=admin.headers,
    )
    body = {"preset_id": preset.json()["id"], "products_per_category": 10}
    with budgeted(app, 15):
        answer = await client.post("/collection/runs/estimate", json=body, headers=admin.headers)
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert (found["ebay_calls"], found["ebay_calls_left_today"], found["fits_today"]) == (
        20,
        15,
        False,
    )
    assert "Not today: the eBay budget resets at" in found["note"]
    assert (await client.get("/collection/runs", headers=admin.headers)).json()["items"] == []
    default_size = await client.post(
        "/collection/runs/estimate", json={"category_ids": ["7"]}, headers=admin.headers
    )
    assert default_size.json()["ebay_calls"] == 50  # RUN_PRODUCTS_PER_CATEGORY
    both = await client.post(
        "/collection/runs/estimate",
        json={"category_ids": ["7"], "preset_id": preset.json()["id"]},
        headers=admin.headers,
    )
    assert both.status_code == 422
    assert "exactly one of preset_id or category_ids" in both.text


async def test_the_estimate_endpoint_is_the_acting_organizations(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    admin = await actors.admin("Acme")
    other = await actors.admin("Globex")
    theirs = await client.post(
        "/collection/presets",
        json={"name": "Theirs", "category_ids": ["1"]},
        headers=other.headers,
    )
    body = {"preset_id": theirs.json()["id"]}
    missing = await client.post("/collection/runs/estimate", json=body, headers=admin.headers)
    assert missing.status_code == 404
    assert "not found" in missing.json()["detail"].lower()
    viewer = await actors.member(other, "viewer")
    refused = await client.post("/collection/runs/estimate", json=body, headers=viewer.headers)
    assert refused.status_code == 403
    assert (await client.post("/collection/runs/estimate", json=body)).status_code == 401


async def test_the_estimate_counts_the_organizations_calls_and_those_waiting_with_it(
    client: httpx.AsyncClient, admin: Actor, app: FastAPI, database: Database
) -> None:
    """Another organization's run waiting for calls makes this one share a short budget:
    the estimate says so, in figures only (no other organization is named)."""
    await org_with_run(database, "Globex", products=500)
    capped = await client.patch(
        "/orgs/current/settings", json={"ebay_daily_call_cap": 400}, headers=admin.headers
    )
    assert capped.status_code == 200, capped.text
    body = {"category_ids": [str(n) for n in range(1, 13)]}  # 600 calls
    with budgeted(app, 800):
        found = (
            await client.post("/collection/runs/estimate", json=body, headers=admin.headers)
        ).json()
    assert (found["ebay_calls"], found["org_daily_cap"], found["org_calls_left_today"]) == (
        600,
        400,
        400,
    )
    assert (found["sharing_organizations"], found["fair_share_today"]) == (1, 400)
    assert found["fits_today"] is False
    assert "Globex" not in found["note"]


async def test_a_finished_run_has_no_estimate(client: httpx.AsyncClient, admin: Actor) -> None:
    run_id = await finished_run(client, admin, {"category_ids": ["3"], "products_per_category": 2})
    got = await client.get(f"/collection/runs/{run_id}", headers=admin.headers)
    assert got.json()["estimate"] is None


@pytest.mark.parametrize("cap", [0, -5, "many", 10_000_001])
async def test_a_cap_out_of_range_is_422_naming_the_field(
    client: httpx.AsyncClient, admin: Actor, cap: object
) -> None:
    response = await client.patch(
        "/orgs/current/settings", json={"ebay_daily_call_cap": cap}, headers=admin.headers
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == "ebay_daily_call_cap"
