"""Screenshots of the web UI for the README: `.venv/bin/python docs/screenshots.py`.

Starts `collection-api serve` on a throw-away SQLite database, fills it through the API
with presets, runs and a schedule (the offline sample providers), and saves one PNG per
page into docs/screenshots/ with headless Chromium (Debian's `chromium` package).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Page, async_playwright

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"
CLI = str(Path(sys.executable).parent / "collection-api")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
MARKET_DAY_SECONDS = 4
"""The sample market moves this often, so that runs of a preset differ (sellers' charts)."""

PRESETS = [
    ("Electronics & computers", ["172282", "541966", "565108", "1266092011"]),
    ("Home & kitchen", ["1055398", "284507", "510106"]),
    ("Toys & games", ["165793011", "166220011"]),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([CLI, *args], env=env, capture_output=True, check=True, timeout=60)
    return result.stdout.decode().strip()


class Api:
    """The JSON API with one user's token."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        assert response.status_code < 400, (path, response.text)
        return response.json() if response.content else None

    def wait(self, run_id: str, done: Any, within: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            run: dict[str, Any] = self.call("GET", f"/collection/runs/{run_id}")
            if done(run):
                return run
            assert time.monotonic() < deadline, run
            time.sleep(0.1)

    def run(self, preset_id: str, **extra: Any) -> str:
        run_id: str = self.call("POST", "/collection/runs", json={"preset_id": preset_id, **extra})[
            "id"
        ]
        self.call("POST", f"/collection/runs/{run_id}/start")
        return run_id


def seed(url: str, env: dict[str, str]) -> dict[str, Any]:
    """An organization with a history: presets, finished runs, a schedule and its fires."""
    boot = json.loads(
        _cli(env, "bootstrap", "--org", "Acme Research", "--email", "maria@acme.example")
    )
    admin = Api(url, boot["token"])
    admin.call(
        "POST",
        "/orgs/current/members",
        json={"email": "ana@acme.example", "role": "member"},
    )
    admin.call(
        "POST",
        "/orgs/current/members",
        json={"email": "lee@acme.example", "role": "viewer"},
    )
    presets = {
        name: admin.call("POST", "/collection/presets", json={"name": name, "category_ids": ids})[
            "id"
        ]
        for name, ids in PRESETS
    }
    electronics = presets["Electronics & computers"]
    toys = admin.run(presets["Toys & games"], name="Toys, first look", products_per_category=10)
    admin.wait(toys, lambda r: r["status"] == "completed")
    cancelled = admin.run(presets["Home & kitchen"], products_per_category=10)
    admin.call("POST", f"/collection/runs/{cancelled}/cancel")
    admin.wait(cancelled, lambda r: r["status"] == "cancelled")  # (cancelling a moment first)
    for month in ("September", "October", "November"):  # each a market day apart
        started = time.monotonic()
        run = admin.run(electronics, name=f"Electronics, {month}", products_per_category=15)
        admin.wait(run, lambda r: r["status"] == "completed")
        time.sleep(max(0.0, MARKET_DAY_SECONDS + 0.5 - (time.monotonic() - started)))
    admin.call(
        "PATCH",
        "/collection/schedule",
        json={
            "preset_id": electronics,
            "cron_expression": "0 6 * * 1",
            "timezone": "Europe/Berlin",
            "enabled": True,
            "notify_email": True,
        },
    )
    fire = admin.call("POST", "/collection/schedule/trigger")
    admin.wait(fire["run_id"], lambda r: r["status"] == "completed")
    latest = fire["run_id"]
    watch_some_changes(admin, latest)
    live = admin.run(
        presets["Home & kitchen"],
        name="Home & kitchen, deep",
        products_per_category=100,
    )
    skipped = admin.http.post("/collection/schedule/trigger")  # logged as skipped: a run is active
    assert skipped.status_code == 409, skipped.text
    schedule_id = fire["schedule_id"]
    admin.call("PATCH", f"/collection/schedules/{schedule_id}", json={"name": "Electronics weekly"})
    for body in (
        {"name": "Toys on weekdays", "preset_id": presets["Toys & games"],
         "cron_expression": "10 6 * * 1-5", "overlap_policy": "buffer_one"},
        {"name": "Kitchen at month end", "preset_id": presets["Home & kitchen"],
         "cron_expression": "0 22 28-31 * *", "enabled": False,
         "paused_note": "Waiting for next month's eBay quota"},
    ):  # fmt: skip
        admin.call("POST", "/collection/schedules", json={"timezone": "Europe/Berlin", **body})
    steady = admin.call(
        "GET", "/collection/sellers", params={"sort": "runs_seen", "preset_id": electronics}
    )["items"][0]["username"]
    return {
        "steady": steady,
        "admin_token": boot["token"],
        "member_token": _cli(env, "token", "--email", "ana@acme.example"),
        "newcomer_token": _cli(env, "token", "--email", "sam@example.com"),
        "presets": presets,
        "completed": latest,
        "live": live,
        "schedule": schedule_id,
        "api": admin,
    }


def watch_some_changes(admin: Api, run_id: str) -> None:
    """Star a few sellers that changed in the run (so its digest has watched news), and
    subscribe the admin to digests."""
    changes = admin.call("GET", f"/collection/runs/{run_id}/changes")
    movers = [m for m in changes["movers"]["items"] if abs(m["rank_change"]) >= 5]
    for item in (
        changes["new_sellers"]["items"][:2] + changes["gone_sellers"]["items"][:1] + movers[:2]
    ):
        admin.call("PUT", f"/collection/watchlist/{item['username']}")
    admin.call("PUT", "/collection/watchlist/harbor_outlet_42")  # not seen by any run yet
    admin.call("PATCH", "/me/digest", json={"subscribed": True, "top_n": 10, "rank_threshold": 5})


async def sign_in(page: Page, url: str, token: str) -> None:
    await page.goto(f"{url}/sign-in")
    await page.get_by_label("Access token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state("networkidle")


async def shoot(page: Page, name: str, *, full_page: bool = True) -> None:
    await page.wait_for_load_state("networkidle")
    path = OUT / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    print(f"docs/screenshots/{path.name}")


async def screenshots(url: str, data: dict[str, Any]) -> None:
    api: Api = data["api"]
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        desktop = await browser.new_context(viewport=DESKTOP, device_scale_factor=1)
        page = await desktop.new_page()

        await page.goto(f"{url}/sign-in")
        await shoot(page, "sign-in")
        await sign_in(page, url, data["admin_token"])

        # A run in progress, refreshing itself.
        api.wait(data["live"], lambda r: r["progress"]["products_searched"] > 90)
        await page.goto(f"{url}/runs/{data['live']}")
        await page.wait_for_timeout(1200)
        await shoot(page, "run-progress")
        api.call("POST", f"/collection/runs/{data['live']}/pause")
        api.wait(data["live"], lambda r: r["status"] == "paused")

        await page.goto(f"{url}/runs")
        await shoot(page, "runs")
        await page.goto(f"{url}/runs/{data['completed']}")
        await shoot(page, "run-results", full_page=False)
        await page.goto(f"{url}/runs/{data['completed']}?sort=feedback")
        await page.locator("#sellers").scroll_into_view_if_needed()
        await shoot(page, "run-results-by-feedback", full_page=False)

        # Margins: the sellers by median margin (the explanation open), a seller's listings.
        seller = api.call(
            "GET",
            f"/collection/runs/{data['completed']}/sellers",
            params={"sort": "listings", "order": "desc", "limit": 1},
        )["items"][0]["username"]
        await page.goto(f"{url}/runs/{data['completed']}?sort=margin#sellers")
        await page.get_by_text("What the median margin includes").click()
        await page.locator("#sellers").scroll_into_view_if_needed()
        await shoot(page, "run-results-by-margin", full_page=False)
        await page.goto(f"{url}/runs/{data['completed']}/sellers/{seller}")
        await shoot(page, "run-seller-margins")
        await page.goto(f"{url}/settings")
        await shoot(page, "settings")
        await page.goto(f"{url}/sellers?sort=runs_seen")
        await shoot(page, "sellers", full_page=False)
        await page.goto(f"{url}/sellers/{data['steady']}")
        await page.locator(".charts figure").first.wait_for()
        await shoot(page, "seller-history")

        await page.goto(f"{url}/runs/new?preset_id={data['presets']['Toys & games']}")
        await shoot(page, "run-new")

        await page.goto(f"{url}/presets")
        await shoot(page, "presets")
        await page.goto(f"{url}/presets/new")
        await page.get_by_label("Name").fill("Electronics & computers")
        await page.get_by_label("Amazon category IDs").fill("172282\n541966\nbooks")
        await page.get_by_role("button", name="Create preset").click()
        await shoot(page, "preset-error")

        await page.goto(f"{url}/members")
        await shoot(page, "members")
        await page.goto(f"{url}/watchlist")
        await shoot(page, "watchlist")
        await page.goto(f"{url}/account")
        await shoot(page, "account-digest")

        await page.goto(f"{url}/schedules")
        await shoot(page, "schedules")
        await page.goto(f"{url}/schedules/{data['schedule']}")
        await shoot(page, "schedule-edit")
        await page.goto(f"{url}/schedule")
        await shoot(page, "schedule")
        await page.get_by_label("Cron expression").fill("0 6 * * MON-FRI,SAT")
        await page.wait_for_timeout(600)
        await page.get_by_label("Cron expression").fill("0 6 * * 8")
        await page.wait_for_timeout(800)
        await shoot(page, "schedule-error", full_page=False)

        phone = await browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True)
        small = await phone.new_page()
        await sign_in(small, url, data["admin_token"])
        await small.goto(f"{url}/runs/{data['completed']}")
        await shoot(small, "phone-run", full_page=False)
        await small.goto(f"{url}/runs/{data['completed']}#digest")
        await shoot(small, "phone-digest", full_page=False)
        await small.locator("#sellers").scroll_into_view_if_needed()
        await shoot(small, "phone-stars", full_page=False)
        await small.goto(f"{url}/runs/{data['completed']}?sort=margin#sellers")
        await small.locator("#sellers").scroll_into_view_if_needed()
        await shoot(small, "phone-run-margins", full_page=False)
        await small.goto(f"{url}/runs/{data['completed']}/sellers/{seller}")
        await shoot(small, "phone-seller-margins")
        await small.goto(f"{url}/sellers/{data['steady']}")
        await small.locator(".charts figure").first.wait_for()
        await shoot(small, "phone-seller-history")
        await small.goto(f"{url}/schedule")
        await shoot(small, "phone-schedule", full_page=False)
        await small.goto(f"{url}/schedules#calendar-heading")
        await shoot(small, "phone-schedules", full_page=False)

        member = await (await browser.new_context(viewport=DESKTOP)).new_page()
        await sign_in(member, url, data["member_token"])
        await member.goto(f"{url}/schedule")
        await shoot(member, "member-schedule-denied")

        newcomer = await (await browser.new_context(viewport=DESKTOP)).new_page()
        await sign_in(newcomer, url, data["newcomer_token"])
        await shoot(newcomer, "welcome")
        await browser.close()
    api.call("POST", f"/collection/runs/{data['live']}/cancel")


def main() -> None:
    """Serve, seed, shoot, stop."""
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),  # a checkout's own code, if given
            "HOME": os.environ.get("HOME", tmp),
            "DATA_DIR": tmp,
            "SAMPLE_PROVIDER_LATENCY_MS": "100",
            "SAMPLE_MARKET_DAY_SECONDS": str(MARKET_DAY_SECONDS),
            "RUN_PRODUCTS_PER_CATEGORY": "20",
            "RUN_PROVIDER_CONCURRENCY": "2",
            "LOG_LEVEL": "WARNING",
        }
        with (Path(tmp) / "server.log").open("wb") as log:
            server = subprocess.Popen(
                [CLI, "serve", "--port", str(port)], env=env, stdout=log, stderr=log
            )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
            data = seed(url, env)
            asyncio.run(screenshots(url, data))
        finally:
            server.terminate()
            server.wait(timeout=15)


if __name__ == "__main__":
    main()
