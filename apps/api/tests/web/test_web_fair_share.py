"""The shared eBay budget in the web UI: what a new run would need (the new-run form's
estimate), what a run needs and why it waits (its page), and the organization's daily cap
(the settings page)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import sqlalchemy as sa
from fastapi import FastAPI

from app.core.clock import utcnow
from app.tables import CollectionRun, RunPhase, RunStatus
from tests.helpers.actors import Actors
from tests.helpers.browser import BrowserFactory
from tests.helpers.budget import budgeted
from tests.helpers.web import make_preset


async def test_the_new_run_form_says_what_the_run_would_need(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await actors.admin("Acme")
    preset_id = await make_preset(client, admin)  # two categories
    signed_in = await browser(admin)
    form = await signed_in.get(f"/runs/new?preset_id={preset_id}")
    assert 'data-estimate-url="/runs/new/estimate"' in form.text
    with budgeted(app, 1000):
        shown = await signed_in.get(
            f"/runs/new/estimate?preset_id={preset_id}&products_per_category=30"
        )
    assert shown.status_code == 200
    assert "<strong>About 60 eBay calls</strong>; 1,000 of the 1,000 a day are left today." in (
        shown.text
    )
    assert "How long it takes is known once a run of your organization has completed." in (
        shown.text
    )
    assert "Not today" not in shown.text
    with budgeted(app, 80):
        short = await signed_in.get(f"/runs/new/estimate?preset_id={preset_id}")
    assert "<strong>About 100 eBay calls</strong>; 80 of the 80 a day are left today." in short.text
    assert "<strong>Not today</strong>: the eBay budget resets at <time" in short.text
    unlimited = await signed_in.get(f"/runs/new/estimate?preset_id={preset_id}")
    assert "the eBay provider has no daily limit here" in unlimited.text


async def test_the_new_run_estimate_says_what_to_fill_in_and_is_the_organizations(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin, other = await actors.admin("Acme"), await actors.admin("Globex")
    theirs = await make_preset(client, other, "Theirs")
    signed_in = await browser(admin)
    empty = await signed_in.get("/runs/new/estimate")
    assert "Choose a preset to see what the run needs" in empty.text
    foreign = await signed_in.get(f"/runs/new/estimate?preset_id={theirs}")
    assert foreign.status_code == 200
    assert "No estimate: preset" in foreign.text
    assert "not found" in foreign.text
    too_big = await signed_in.get(
        f"/runs/new/estimate?preset_id={theirs}&products_per_category=500"
    )
    assert "No estimate: products_per_category" not in too_big.text
    assert "No estimate: use a number no larger than 100" in too_big.text
    viewer = await browser(await actors.member(admin, "viewer"))
    assert (await viewer.get("/runs/new/estimate")).status_code == 403


async def test_a_runs_page_says_what_it_needs_and_why_it_waits(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await actors.admin()
    run = await client.post(
        "/collection/runs",
        json={"category_ids": ["5"], "products_per_category": 40},
        headers=admin.headers,
    )
    run_id = run.json()["id"]
    signed_in = await browser(admin)

    async def wait(waiting_for: str, resumes_in: timedelta) -> str:
        async with app.state.instance.database.transaction() as session:
            await session.execute(
                sa.update(CollectionRun)
                .where(CollectionRun.id == uuid.UUID(run_id))
                .values(
                    status=RunStatus.RUNNING,
                    phase=RunPhase.EBAY,
                    products_found=40,
                    products_searched=10,
                    lease_owner="elsewhere:1",
                    lease_expires_at=utcnow() + timedelta(minutes=5),
                    resumes_at=utcnow() + resumes_in,
                    waiting_for=waiting_for,
                )
            )
        with budgeted(app, 5000):
            page = await signed_in.get(f"/runs/{run_id}")
            live = await signed_in.get(f"/runs/{run_id}/live")
        assert "Waiting for" in live.text  # the part of the page that refreshes says it too
        return page.text

    turn = await wait(
        "its turn at the eBay budget: 3 organizations share what is left today (1,234 calls)",
        timedelta(minutes=2),
    )
    assert (
        "Waiting for its turn at the eBay budget: 3 organizations share what is left today "
        "(1,234 calls). Continues at <time"
    ) in turn
    assert "(in about 2 min)." in turn
    assert "<strong>About 30 eBay calls</strong>; 5,000 of the 5,000 a day are left today." in turn
    capped = await wait(
        "the daily cap of your organization (300 eBay calls a day, all taken today)",
        timedelta(hours=5),
    )
    assert (
        "Waiting for the daily cap of your organization (300 eBay calls a day, all taken "
        "today). Continues at <time"
    ) in capped
    assert "(in about 5 h)." in capped


async def test_admins_set_the_daily_cap_on_the_settings_page(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await actors.admin()
    viewer_actor = await actors.member(admin, "viewer")
    signed_in = await browser(admin)
    with budgeted(app, 5000):
        page = await signed_in.get("/settings")
    assert 'name="ebay_daily_call_cap"' in page.text
    assert "one eBay budget of 5,000 calls a day" in page.text
    for value, message in (("abc", "enter a whole number"), ("0", "use a number of at least 1")):
        bad = await signed_in.submit(
            "/settings/ebay-cap", {"ebay_daily_call_cap": value}, page="/settings"
        )
        assert bad.status_code == 400, value
        assert message in bad.text, value
        assert 'aria-invalid="true"' in bad.text
    changed = await signed_in.submit(
        "/settings/ebay-cap", {"ebay_daily_call_cap": " 250 "}, page="/settings"
    )
    assert changed.status_code == 303
    shown = await signed_in.get("/settings")
    assert "Daily cap set to 250 eBay calls" in shown.text
    assert 'value="250"' in shown.text
    api = await client.get("/orgs/current/settings", headers=viewer_actor.headers)
    assert api.json()["ebay_daily_call_cap"] == 250

    viewer = await browser(viewer_actor)
    seen = await viewer.get("/settings")
    assert "Your runs take at most <strong>250</strong> eBay calls a day." in seen.text
    assert 'name="ebay_daily_call_cap"' not in seen.text
    refused = await viewer.submit(
        "/settings/ebay-cap", {"ebay_daily_call_cap": ""}, page="/settings"
    )
    assert refused.status_code == 403

    removed = await signed_in.submit(
        "/settings/ebay-cap", {"ebay_daily_call_cap": ""}, page="/settings"
    )
    assert removed.status_code == 303
    assert "No daily cap of eBay calls" in (await signed_in.get("/settings")).text
