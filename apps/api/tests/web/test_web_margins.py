"""Margins on the pages: the sellers table shows each seller's median margin with currency
codes, a seller's page lists its listings next to the Amazon price, and the settings page
shows (and lets admins change) the expected fee % and what an estimate includes."""

from __future__ import annotations

import re
import urllib.parse

import httpx

from tests.helpers.actors import Actors
from tests.helpers.browser import BrowserFactory
from tests.helpers.web import HTML, completed_run

MONEY = re.compile(r"-?[\d,]+\.\d\d USD")


async def test_the_run_page_shows_median_margins_and_links_each_seller(
    client: httpx.AsyncClient, actors: Actors, browser: BrowserFactory
) -> None:
    admin = await actors.admin()
    run_id = await completed_run(client, admin, ["172282", "541966"])
    viewer = await browser(await actors.member(admin, "viewer"))
    page = await viewer.get(f"/runs/{run_id}")
    assert page.status_code == 200
    assert "Median margin" in page.text
    assert "What the median margin includes" in page.text
    assert "13.25 %" in page.text
    assert "Not included: taxes" in page.text
    sellers = (
        await client.get(f"/collection/runs/{run_id}/sellers?limit=25", headers=admin.headers)
    ).json()["items"]
    for seller in sellers:
        link = f"/runs/{run_id}/sellers/{urllib.parse.quote(seller['username'])}"
        assert f'href="{link}"' in page.text
    margins = [s["median_margin"] for s in sellers if s["median_margin"] is not None]
    assert margins
    assert f"{float(margins[0]):,.2f} USD" in page.text  # every amount with its currency code
    by_margin = await viewer.get(f"/runs/{run_id}?sort=margin")
    assert 'aria-sort="descending"' in by_margin.text


async def test_a_sellers_page_lists_its_listings_with_prices_fees_and_margins(
    client: httpx.AsyncClient, actors: Actors, browser: BrowserFactory
) -> None:
    admin = await actors.admin()
    run_id = await completed_run(client, admin, ["172282", "541966"])
    sellers = (
        await client.get(f"/collection/runs/{run_id}/sellers?limit=200", headers=admin.headers)
    ).json()["items"]
    seller = max(sellers, key=lambda s: s["listings"])
    listings = (
        await client.get(
            f"/collection/runs/{run_id}/listings",
            params={"seller": seller["username"], "limit": 200},
            headers=admin.headers,
        )
    ).json()["items"]
    signed_in = await browser(admin)
    page = await signed_in.get(f"/runs/{run_id}/sellers/{urllib.parse.quote(seller['username'])}")
    assert page.status_code == 200
    assert page.headers["content-type"] == HTML
    assert f"<h1>{seller['username']}</h1>" in page.text
    assert "What the estimated margin includes" in page.text
    assert "the organization's setting when this run was created" in page.text
    rows = re.findall(r"<tr>\s*<td class=\"product\">", page.text)
    assert len(rows) == len(listings) == seller["listings"]
    for listing in listings:
        assert listing["asin"] in page.text
        assert listing["url"] in page.text
        if listing["estimated_margin"] is not None:
            assert f"{float(listing['estimated_margin']):,.2f} USD" in page.text
    assert MONEY.search(page.text)


async def test_seller_page_errors_say_what_to_do(
    client: httpx.AsyncClient, actors: Actors, browser: BrowserFactory
) -> None:
    admin = await actors.admin()
    other = await actors.admin("Other")
    run_id = await completed_run(client, admin, ["172282"])
    seller = (
        await client.get(f"/collection/runs/{run_id}/sellers?limit=1", headers=admin.headers)
    ).json()["items"][0]["username"]
    signed_in = await browser(admin)
    unknown = await signed_in.get(f"/runs/{run_id}/sellers/nobody-like-this")
    assert unknown.status_code == 404
    assert "No seller named" in unknown.text
    malformed = await signed_in.get(f"/runs/not-a-run/sellers/{seller}")
    assert malformed.status_code == 404
    bad_cursor = await signed_in.get(f"/runs/{run_id}/sellers/{seller}?cursor=garbage")
    assert bad_cursor.status_code == 400
    assert "first page" in bad_cursor.text
    stranger = await browser(other)
    foreign = await stranger.get(f"/runs/{run_id}/sellers/{seller}")
    assert foreign.status_code == 404
    assert "This run is not in Other" in foreign.text


async def test_the_settings_page_shows_and_admins_change_the_fee(
    actors: Actors, browser: BrowserFactory, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin()
    viewer_actor = await actors.member(admin, "viewer")
    viewer = await browser(viewer_actor)
    seen = await viewer.get("/settings")
    assert seen.status_code == 200
    assert "13.25 %" in seen.text
    assert "What an estimated margin includes" in seen.text
    assert 'name="expected_fee_percent"' not in seen.text  # no form for a viewer
    refused = await viewer.submit("/settings", {"expected_fee_percent": "10"}, page="/settings")
    assert refused.status_code == 403
    assert "change the organization&#39;s settings" in refused.text

    signed_in = await browser(admin)
    for value, message in (
        ("101", "use a number no larger than 100"),
        ("-1", "use a number of at least 0"),
        ("ten", "valid decimal"),
        ("", "fill in this field"),
    ):
        bad = await signed_in.submit("/settings", {"expected_fee_percent": value}, page="/settings")
        assert bad.status_code == 400, value
        assert message in bad.text, value
        assert 'aria-invalid="true"' in bad.text
    changed = await signed_in.submit(
        "/settings", {"expected_fee_percent": " 11.5 "}, page="/settings"
    )
    assert changed.status_code == 303
    shown = await signed_in.get("/settings")
    assert "Expected eBay fees set to 11.50 %" in shown.text
    assert 'value="11.50"' in shown.text
    api = await client.get("/orgs/current/settings", headers=viewer_actor.headers)
    assert api.json()["expected_fee_percent"] == "11.50"
