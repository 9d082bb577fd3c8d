"""No page scrolls sideways on a phone: every page at 375 px wide in headless Chromium,
with data that stretches it (a 100-character preset name without spaces, a long
organization name and email, a run with results, the schedule and its history, members
and an invitation, a seller's listings with margins, the settings). A screenshot of each
page is kept in the test's tmp_path."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx

from tests.helpers.chromium import TIMEOUT_MS, WIDE_ELEMENTS, expect
from tests.helpers.processes import Server, run_cli

PHONE = {"width": 375, "height": 812}
LONG_PRESET = "ElectronicsAccessoriesComputerPeripheralsAndHomeOfficeGamingSetups" + "X" * 33
LONG_ORG = "Internationale-Handelsgesellschaft-für-Marktforschung-und-Datenanalyse-GmbH"
LONG_EMAIL = "the.head.of.marketplace.research.and.analytics@example-research-company.com"
LONG_SELLER = "the_longest_possible_ebay_seller_name_" + "x" * 62


async def _seed(url: str, env: dict[str, str]) -> dict[str, Any]:
    boot = json.loads(
        await asyncio.to_thread(run_cli, env, "bootstrap", "--org", LONG_ORG, "--email", LONG_EMAIL)
    )
    headers = {"Authorization": f"Bearer {boot['token']}", "X-Org-Id": boot["org_id"]}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as api:

        async def call(method: str, path: str, **body: Any) -> Any:
            response = await api.request(method, path, json=body or None)
            assert response.is_success, (path, response.text)
            return response.json() if response.content else None

        preset = await call(
            "POST", "/collection/presets", name=LONG_PRESET, category_ids=["172282", "541966"]
        )
        run = await call("POST", "/collection/runs", preset_id=preset["id"])
        await call("POST", f"/collection/runs/{run['id']}/start")
        for _ in range(600):
            if (await call("GET", f"/collection/runs/{run['id']}"))["status"] == "completed":
                break
            await asyncio.sleep(0.1)
        await call(
            "PATCH",
            "/collection/schedule",
            preset_id=preset["id"],
            cron_expression="30 8 * * 1-5",
            timezone="America/Argentina/ComodRivadavia",
            enabled=True,
            notify_email=True,
        )
        sellers = await call(
            "GET", f"/collection/runs/{run['id']}/sellers?sort=listings&order=desc"
        )
        seller = sellers["items"][0]["username"]
        fired = await call("POST", "/collection/schedule/trigger")
        await call("POST", f"/collection/runs/{fired['run_id']}/cancel")
        await call("POST", "/orgs/current/members", email=f"x.{LONG_EMAIL}", role="member")
        await call("PUT", f"/collection/watchlist/{LONG_SELLER}")
    return {"token": boot["token"], "preset": preset["id"], "run": run["id"], "seller": seller}


async def test_no_page_scrolls_sideways_at_375_px(
    server: tuple[Server, dict[str, str]], chromium: Any, tmp_path: Path
) -> None:
    process, env = server
    data = await _seed(process.url, env)
    context = await chromium.new_context(viewport=PHONE, is_mobile=True, locale="en-US")
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    try:
        await page.goto(f"{process.url}/sign-in")
        await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        wide = {"/sign-in": await _overflow(page, tmp_path, "sign-in")}
        await page.get_by_label("Access token").fill(data["token"])
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible()

        run, preset = data["run"], data["preset"]
        for path in (
            "/runs",
            "/runs/new",
            f"/runs/{run}",
            f"/runs/{run}?page=99",
            f"/runs/{run}/sellers/{data['seller']}",
            "/settings",
            "/presets",
            "/presets/new",
            f"/presets/{preset}",
            "/members",
            "/watchlist",
            "/account",
            "/schedule",
            "/schedules",
            "/no-such-page",
        ):
            await page.goto(process.url + path)
            await expect(page.locator("main")).to_be_visible()
            wide[path] = await _overflow(page, tmp_path, path)
        # A form sent back with its messages (the name is taken: it is on the page twice).
        await page.goto(f"{process.url}/presets/new")
        await page.get_by_label("Name").fill(LONG_PRESET.lower())
        await page.get_by_label("Amazon category IDs").fill("1")
        await page.get_by_role("button", name="Create preset").click()
        await expect(page.locator("#name-error")).to_contain_text("already exists")
        wide["/presets (taken name)"] = await _overflow(page, tmp_path, "preset-taken")
    finally:
        await context.close()

    assert {path: found for path, found in wide.items() if found} == {}, (
        f"pages wider than {PHONE['width']} px (screenshots in {tmp_path})"
    )


async def _overflow(page: Any, directory: Path, name: str) -> dict[str, Any] | None:
    """How far the page is wider than the viewport, and what sticks out; None if nothing."""
    shot = directory / f"{name.strip('/').replace('/', '_')}.png"
    await page.screenshot(path=str(shot), full_page=True)
    width: int = await page.evaluate("document.scrollingElement.scrollWidth")
    if width <= PHONE["width"]:
        return None
    return {"width": width, "elements": await page.evaluate(WIDE_ELEMENTS)}
