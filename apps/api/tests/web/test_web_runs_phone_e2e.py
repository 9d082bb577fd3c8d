"""A run's changes and the filtered runs list on a phone, in headless Chromium against a
real `serve` whose sample market moves every second: two runs of a preset a market day
apart, the changes of the second (more rows loaded in place by app.js, another run chosen
to compare with), the list filtered and its "since the last run" card, the sellers directory
and a seller's charts (drawn by uPlot from the figures' table, no script error or CSP
refusal), Run again, dates in the reader's zone; no page scrolls sideways at 390 px.
Screenshots are kept in the test's tmp_path (and SHOTS_DIR if set)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.chromium import TIMEOUT_MS, WIDE_ELEMENTS, expect
from tests.helpers.processes import Server, run_cli

pytestmark = pytest.mark.slow

PHONE = {"width": 390, "height": 844}
MOVING_MARKET = {
    "SAMPLE_MARKET_DAY_SECONDS": "1",
    "RUN_PRODUCTS_PER_CATEGORY": "20",
    "RUN_LISTINGS_PER_PRODUCT": "10",
}
MOMENT = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) \d{4}-\d\d-\d\d \d\d:\d\d JST$")


async def _seed(url: str, env: dict[str, str]) -> dict[str, Any]:
    """An organization with a preset of two categories and two completed runs of it, the
    second created at least one market day after the first."""
    boot = json.loads(
        await asyncio.to_thread(
            run_cli, env, "bootstrap", "--org", "Acme Research", "--email", "ana@example.com"
        )
    )
    headers = {"Authorization": f"Bearer {boot['token']}", "X-Org-Id": boot["org_id"]}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as api:

        async def call(method: str, path: str, **body: Any) -> Any:
            response = await api.request(method, path, json=body or None)
            assert response.is_success, (path, response.text)
            return response.json()

        preset = await call(
            "POST",
            "/collection/presets",
            name="Home and kitchen",
            category_ids=["1055398", "284507"],
        )
        runs = []
        for _ in range(2):
            run = await call("POST", "/collection/runs", preset_id=preset["id"])
            await call("POST", f"/collection/runs/{run['id']}/start")
            for _ in range(600):
                if (await call("GET", f"/collection/runs/{run['id']}"))["status"] == "completed":
                    break
                await asyncio.sleep(0.1)
            runs.append(run)
            await asyncio.sleep(1.1)  # the next market day
    return {"token": boot["token"], "preset": preset, "runs": runs}


@pytest.mark.parametrize("server", [MOVING_MARKET], indirect=True)
async def test_changes_lists_and_sellers_fit_a_phone(
    server: tuple[Server, dict[str, str]], chromium: Any, tmp_path: Path
) -> None:
    process, env = server
    data = await _seed(process.url, env)
    first, second = data["runs"]
    context = await chromium.new_context(
        viewport=PHONE, is_mobile=True, locale="en-US", timezone_id="Asia/Tokyo"
    )
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    page.on("pageerror", lambda error: problems.append(str(error)))
    wide: dict[str, Any] = {}
    try:
        await page.goto(f"{process.url}/sign-in")
        await page.get_by_label("Access token").fill(data["token"])
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible()

        # The second run's changes since the first, in the reader's zone.
        await page.goto(f"{process.url}/runs/{second['id']}")
        changes = page.locator("#changes")
        await expect(changes.locator(".compared")).to_contain_text(
            f"Compared with run {first['name']} of"
        )
        assert MOMENT.match(await changes.locator(".compared time").inner_text())
        assert MOMENT.match(await page.locator("dd time").first.inner_text())
        counts = await changes.locator(".changes-summary dd").all_inner_texts()
        assert len(counts) == 5
        summary = [int(n.replace(",", "")) for n in counts]
        assert sum(summary[:3]) > 0, summary  # it moved
        wide["run with changes"] = await _overflow(page, tmp_path, "run-changes")

        # A reader whose zone the server does not know yet: app.js writes the moment in the
        # same pattern (Intl's name for the zone), with UTC as the tooltip, and tells it.
        await context.clear_cookies(name="collection_zone")
        await page.reload()
        created = page.locator("dd time").first
        await expect(created).to_have_text(re.compile(r"^\w{3} \d{4}-\d\d-\d\d \d\d:\d\d GMT\+9$"))
        await expect(created).to_have_attribute("title", re.compile(r" UTC$"))
        zone = [c["value"] for c in await context.cookies() if c["name"] == "collection_zone"]
        assert zone == ["Asia%2FTokyo"]

        # "Show more" appends the next rows in place, and moves focus to the first of them.
        expandable = page.locator(".change-section", has=page.locator("a[data-more]")).first
        if await expandable.count():
            section = page.locator(f"#{await expandable.get_attribute('id')}")
            more = section.locator("a[data-more]")
            rows = section.locator("tbody tr")
            before = await rows.count()
            await more.click()
            await expect(rows).not_to_have_count(before)
            assert page.url.endswith(f"/runs/{second['id']}")  # no page load
            await expect(rows.nth(before)).to_be_focused()
            wide["run with more changes"] = await _overflow(page, tmp_path, "run-changes-more")

        # Another run to compare with, chosen in the form.
        await changes.get_by_label("Compare with").select_option(first["id"])
        await changes.get_by_role("button", name="Compare").click()
        await expect(page.locator("#changes .compared")).to_contain_text(first["name"])
        href = await page.get_by_role("link", name="Download changes (CSV)").get_attribute("href")
        assert href == f"/runs/{second['id']}/export.csv?kind=changes&against={first['id']}"

        # The first run has nothing earlier to compare with, and says so.
        await page.goto(f"{process.url}/runs/{first['id']}")
        await expect(page.locator("#changes")).to_contain_text("Nothing to compare with yet")
        wide["run without changes"] = await _overflow(page, tmp_path, "run-first")

        # The list, filtered: the form keeps what was chosen.
        await page.goto(f"{process.url}/runs")
        await page.get_by_label("Preset").select_option(label="Home and kitchen")
        await page.get_by_label("Status").select_option("completed")
        await page.get_by_label("Started by").select_option("manual")
        await page.get_by_label("Created from").fill(first["created_at"][:10])
        await page.get_by_role("button", name="Filter").click()
        await expect(page.locator("td.run-name")).to_have_count(2)
        await expect(page.get_by_label("Status")).to_have_value("completed")
        await expect(page.locator("#dates-hint")).to_contain_text("Asia/Tokyo")
        assert MOMENT.match(await page.locator("td time").first.inner_text())
        wide["filtered list"] = await _overflow(page, tmp_path, "runs-filtered")
        await page.get_by_label("Created from").fill("2001-01-01")
        await page.get_by_label("to (included)").fill("2001-01-02")
        await page.get_by_role("button", name="Filter").click()
        await expect(page.get_by_role("heading", name="No completed runs match")).to_be_visible()
        wide["empty filtered list"] = await _overflow(page, tmp_path, "runs-filtered-empty")

        # The home page's card: what the second run gained and lost, as its changes say.
        await page.goto(f"{process.url}/runs")
        card = page.locator(".since-card", has_text="Home and kitchen")
        await expect(card.locator(".gained .figure")).to_have_text(f"+{summary[0]}")
        await expect(card.locator(".lost .figure")).to_have_text(f"\u2212{summary[1]}")
        wide["home cards"] = await _overflow(page, tmp_path, "runs-cards")

        # The sellers directory, and a seller both runs saw, charted from its table.
        await page.get_by_role("link", name="Sellers", exact=True).click()
        await expect(page.get_by_role("heading", name="Sellers", exact=True)).to_be_visible()
        wide["sellers"] = await _overflow(page, tmp_path, "sellers")
        await page.get_by_label("Order by").select_option("runs_seen")
        await page.get_by_role("button", name="Search").click()
        await page.locator("td.seller a").first.click()
        charts = page.locator(".charts").first
        await expect(charts.locator("figure.chart canvas")).to_have_count(3)
        await expect(charts.locator("figcaption")).to_have_text(
            ["Rank (1 lists the most products)", "Products listed", "Median price (USD)"]
        )
        label = await charts.locator('[role="img"]').first.get_attribute("aria-label")
        assert label is not None
        assert re.match(r"^Rank \(1 lists the most products\) in 2 runs: \d+ on \w{3} ", label)
        table = page.locator("table.history").first
        await expect(table.locator("tbody tr")).to_have_count(2)  # the figures, for everyone
        wide["seller"] = await _overflow(page, tmp_path, "seller")
        assert problems == [], problems  # no script error, nothing the CSP refused

        # Run again: a new run of the same preset, followed live until it completes.
        await page.goto(f"{process.url}/runs/{second['id']}")
        # The answer to the button sets the message the next page shows (that page is
        # tested over HTTP in test_web_run_changes: here the new run may finish, and its
        # page reload, before the browser could read the first one, or even its body).
        async with (
            page.expect_response(
                lambda r: r.request.method == "POST" and r.url.endswith("/again")
            ) as answered,
            page.expect_navigation(),
        ):
            await page.get_by_role("button", name="Run again").click()
        redirect = await answered.value
        assert redirect.status == 303
        cookies = urllib.parse.unquote(await redirect.header_value("set-cookie") or "")
        assert "again, with the same size" in cookies
        assert second["id"] not in page.url  # on the new run's page
        await expect(page.locator("#run-live .badge")).to_have_text("Completed")
        await expect(page.locator("#changes .compared")).to_contain_text(second["name"])
        wide["run again"] = await _overflow(page, tmp_path, "run-again")
    finally:
        await context.close()
        _keep_screenshots(tmp_path)

    assert {name: found for name, found in wide.items() if found} == {}, (
        f"pages wider than {PHONE['width']} px (screenshots in {tmp_path})"
    )


async def _overflow(page: Any, directory: Path, name: str) -> dict[str, Any] | None:
    """How far the page is wider than the viewport, and what sticks out; None if nothing."""
    await page.screenshot(path=str(directory / f"{name}.png"), full_page=True)
    width: int = await page.evaluate("document.scrollingElement.scrollWidth")
    if width <= PHONE["width"]:
        return None
    return {"width": width, "elements": await page.evaluate(WIDE_ELEMENTS)}


def _keep_screenshots(directory: Path) -> None:
    """Copies of the screenshots in SHOTS_DIR, when it is set (to look at them)."""
    shots = os.environ.get("SHOTS_DIR")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        for shot in directory.glob("*.png"):
            shutil.copy(shot, shots)
