"""The web UI in headless Chromium against a real `collection-api serve` process: what a
person does, end to end (sign in, preset, run, CSV, schedule, a member refused)."""

from __future__ import annotations

import asyncio
import csv
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.chromium import expect
from tests.helpers.processes import Server, run_cli

pytestmark = pytest.mark.slow


def _sign_in_link(server: Server) -> str:
    match = re.search(r"http://\S+/sign-in/link\?code=\S+", server.logs())
    assert match, server.logs()
    return match.group(0)


async def test_an_admin_signs_in_runs_a_preset_and_schedules_it(
    server: tuple[Server, dict[str, str]], page: Any, tmp_path: Path
) -> None:
    process, env = server

    # The one-time link printed by `serve`; nobody administers anything yet.
    await page.goto(_sign_in_link(process))
    await expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
    await page.get_by_label("Name").fill("Acme Research")
    await page.get_by_role("button", name="Create organization").click()

    # A preset: the API's message at the field first, then saved.
    await expect(page.get_by_role("heading", name="No presets yet")).to_be_visible()
    await page.get_by_role("link", name="Create a preset").click()
    await page.get_by_label("Name").fill("Electronics")
    await page.get_by_label("Amazon category IDs").fill("172282, abc")
    await page.get_by_role("button", name="Create preset").click()
    await expect(page.locator("#category_ids-error")).to_contain_text("got 'abc'")
    await expect(page.get_by_label("Amazon category IDs")).to_have_attribute("aria-invalid", "true")
    await page.get_by_label("Amazon category IDs").fill("172282\n541966")
    await page.get_by_role("button", name="Create preset").click()
    await expect(page.get_by_role("status")).to_contain_text("Preset Electronics created")

    # A run from it, followed live until it completes.
    await page.get_by_role("link", name="Run", exact=True).click()
    await expect(page.get_by_label("Preset")).to_have_value(re.compile(".+"))
    await page.get_by_role("button", name="Create run").click()
    await expect(page.locator("#run-live .badge")).to_have_text("Completed")
    await expect(page.locator("table.sellers tbody tr").first).to_be_visible()
    assert await page.locator("#amazon-progress").get_attribute("value") == "2"
    created = page.locator("dd time").first  # in the reader's time zone; UTC on hover
    await expect(created).to_have_text(re.compile(r"^\w{3} \d{4}-\d\d-\d\d \d\d:\d\d JST$"))
    await expect(created).to_have_attribute(
        "title", re.compile(r"^\w{3} \d{4}-\d\d-\d\d \d\d:\d\d UTC$")
    )

    async with page.expect_download() as download:
        await page.get_by_role("link", name="Download sellers (CSV)").click()
    saved = tmp_path / "sellers.csv"
    await (await download.value).save_as(saved)
    rows = list(csv.reader(saved.open(encoding="utf-8")))
    assert rows[0][:3] == ["rank", "seller_username", "products"]
    first_seller = await page.locator("table.sellers tbody tr td.seller").first.inner_text()
    assert rows[1][1] == first_seller

    # The schedule (the default one, on the single-schedule page the schedules page links):
    # a bad expression is explained as it is typed and when saved...
    await page.get_by_role("link", name="Schedules", exact=True).click()
    await expect(page.get_by_role("heading", name="No schedules yet")).to_be_visible()
    await page.get_by_role("link", name="single-schedule page").click()
    cron = page.get_by_label("Cron expression")
    await cron.fill("0 25 * * *")
    await expect(page.locator("#cron_expression-error")).to_contain_text("25")
    await expect(cron).to_have_attribute("aria-invalid", "true")
    await page.get_by_role("button", name="Save schedule").click()
    await expect(page.locator("#cron_expression-error")).to_contain_text("25")
    # ...a good one previews its next five times in the chosen zone.
    await page.get_by_label("Time zone").fill("Europe/Berlin")
    await cron.fill("0 9 * * 1-5")
    await expect(page.locator("#cron_expression-error")).to_be_hidden()
    await expect(page.locator("#cron-preview .fire-times li")).to_have_count(5)
    await expect(page.locator("#cron-preview li").first).to_contain_text(re.compile(r"09:00 CES?T"))
    await page.get_by_label("Preset").select_option(label="Electronics")
    await page.get_by_label("Enabled").check()
    await page.get_by_role("button", name="Save schedule").click()
    await expect(page.get_by_role("status").first).to_contain_text("Schedule saved: Electronics")
    await expect(page.locator(".page-head .badge")).to_have_text("Enabled")
    # Toggled off again.
    await page.get_by_label("Enabled").uncheck()
    await page.get_by_role("button", name="Save schedule").click()
    await expect(page.locator(".page-head .badge")).to_have_text("Disabled")

    # Signing out ends the session on the server: the old cookie, put back, is no good.
    session_cookie = next(
        c for c in await page.context.cookies() if c["name"] == "collection_session"
    )
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("status")).to_contain_text("You are signed out")
    await page.context.add_cookies([session_cookie])
    await page.goto(f"{process.url}/runs")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await expect(page.get_by_role("status")).to_contain_text("Your session has ended")

    # The way back in: a new one-time link from a separate command, while `serve` runs.
    link = await asyncio.to_thread(run_cli, env, "sign-in-link", "--url", process.url)
    assert "to sign in as admin@localhost" in link, link  # (who made the organization)
    again = re.search(r"http://\S+/sign-in/link\?code=\S+", link)
    assert again, link
    await page.goto(again.group(0))
    await expect(page.locator(".org-name")).to_have_text("Acme Research · admin")


async def test_a_member_signs_in_with_a_token_and_is_refused_the_schedule(
    server: tuple[Server, dict[str, str]], page: Any
) -> None:
    process, env = server
    boot = json.loads(
        await asyncio.to_thread(
            run_cli, env, "bootstrap", "--org", "Beta", "--email", "boss@example.com"
        )
    )
    async with httpx.AsyncClient() as http:
        added = await http.post(
            f"{process.url}/orgs/current/members",
            json={"email": "ana@example.com", "role": "member"},
            headers={"Authorization": f"Bearer {boot['token']}", "X-Org-Id": boot["org_id"]},
        )
    assert added.status_code == 201, added.text
    token = await asyncio.to_thread(run_cli, env, "token", "--email", "ana@example.com")

    await page.goto(f"{process.url}/schedule")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.get_by_label("Access token").fill("not a token")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#token-error")).to_contain_text("invalid token")
    await page.get_by_label("Access token").fill(token)
    await page.get_by_role("button", name="Sign in").click()

    # Back to the page asked for: refused, with the reason; and no link to it anywhere.
    await expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    await expect(page.locator("main")).to_contain_text("admin.automation")
    await page.get_by_role("link", name="Go to the runs").click()
    await expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible()
    await expect(page.get_by_role("navigation", name="Main").get_by_role("link")).to_have_text(
        ["Runs", "Sellers", "Presets", "Watchlist", "Members", "Settings"]
    )
