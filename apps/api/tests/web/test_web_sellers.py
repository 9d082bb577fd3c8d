"""Sellers across runs in the web UI: the directory page (search, order, preset, pages and
the errors a reader can cause), a seller's page (each preset's runs as the table the charts
are drawn from, current listings, 404s, who may star), and the home page's cards of what
each preset's latest run gained and lost, which agree with the run's changes."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from app.core.database import Database
from app.web import sellers as seller_pages
from tests.helpers.actors import Actor, Actors
from tests.helpers.browser import BrowserFactory
from tests.helpers.directory import completed_run, listings
from tests.helpers.web import make_preset

T0 = datetime(2026, 6, 1, 6, tzinfo=UTC)


def _text(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def _sellers(page: str) -> list[str]:
    return re.findall(r'<td class="seller"><a href="/sellers/[^"]+">([^<]+)</a></td>', page)


async def _two_runs(
    client: httpx.AsyncClient, database: Database, admin: Actor, preset: str
) -> tuple[str, str]:
    """Tools, day 0: a lists 2 products, b 1, c 1. Day 1: b lists 3, a 1, d 1 (c gone)."""
    first = await completed_run(client, database, admin, listings("abc", "a"), T0, preset_id=preset)
    second = await completed_run(
        client,
        database,
        admin,
        listings("bad", "b", "b", price="12.50"),
        T0 + timedelta(days=1),
        preset_id=preset,
    )
    return str(first), str(second)


async def test_the_directory_searches_orders_filters_and_pages(
    client: httpx.AsyncClient,
    actors: Actors,
    database: Database,
    browser: BrowserFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin = await actors.admin()
    tools = await make_preset(client, admin, "Tools")
    toys = await make_preset(client, admin, "Toys")
    _, second = await _two_runs(client, database, admin, tools)
    await completed_run(
        client, database, admin, listings("e"), T0 + timedelta(days=2), preset_id=toys
    )
    signed_in = await browser(admin)

    page = await signed_in.get("/sellers")
    assert page.status_code == 200
    assert _sellers(page.text) == ["seller-e", "seller-b", "seller-a", "seller-d", "seller-c"]
    words = _text(page.text)
    assert "seller-b ▲ Up 1 3 2" in words  # trend, rank, products, runs
    assert "seller-d New 3 1 1" in words
    assert "seller-c Gone 3 1 1" in words
    assert 'aria-current="page">Sellers</a>' in page.text

    by_rank = await signed_in.get("/sellers", params={"sort": "rank", "preset_id": tools})
    assert _sellers(by_rank.text) == ["seller-b", "seller-a", "seller-d", "seller-c"]
    assert 'aria-sort="ascending"' in by_rank.text
    found = await signed_in.get("/sellers", params={"q": "R-A"})
    assert _sellers(found.text) == ["seller-a"]
    none = await signed_in.get("/sellers", params={"q": "zz", "preset_id": toys})
    assert "No seller\u2019s username contains \u201czz\u201d" in _text(none.text)

    monkeypatch.setattr(seller_pages, "SELLERS_PER_PAGE", 2)
    seen: list[str] = []
    path: str | None = "/sellers?sort=username&order=desc"
    while path:
        shown = await signed_in.get(path)
        assert shown.status_code == 200
        seen += _sellers(shown.text)
        more = re.search(r'<a href="([^"]+)" rel="next">Next sellers', shown.text)
        path = html.unescape(more.group(1)) if more else None
    assert seen == ["seller-e", "seller-d", "seller-c", "seller-b", "seller-a"]

    for params, field, message in (
        ({"sort": "price"}, "sort", "choose an order from the list, not 'price'"),
        ({"preset_id": "not-a-preset"}, "preset_id", "choose a preset from the list"),
        ({"preset_id": second}, "preset_id", "that preset is not one of this organization"),
        ({"q": "a\x00b"}, "q", "A username must not contain"),
        ({"q": "x" * 101}, "q", "A username is at most 100 characters long"),
    ):
        refused = await signed_in.get("/sellers", params=params)
        assert refused.status_code == 400, params
        assert re.search(rf'id="{field}"[^>]*aria-invalid="true"', refused.text), field
        assert message in html.unescape(refused.text), params
        assert _sellers(refused.text), "the page still lists sellers"
    broken = await signed_in.get("/sellers", params={"cursor": "not-a-cursor"})
    assert broken.status_code == 400
    assert "start again from the first page" in broken.text


async def test_a_seller_page_has_each_presets_runs_to_chart_and_its_listings(
    client: httpx.AsyncClient, actors: Actors, database: Database, browser: BrowserFactory
) -> None:
    admin = await actors.admin()
    tools = await make_preset(client, admin, "Tools")
    first, second = await _two_runs(client, database, admin, tools)
    signed_in = await browser(admin)

    page = await signed_in.get("/sellers/seller-b")
    assert page.status_code == 200
    assert "uPlot.iife.min.js" in page.text
    assert "charts.js" in page.text
    assert 'data-charts-for="preset-1-table" data-currency="USD" hidden' in page.text
    rows = re.findall(r'<tr data-time="(\d+)" data-run="[^"]+">(.*?)</tr>', page.text, re.S)
    assert [int(time) for time, _ in rows] == [
        int(T0.timestamp()),
        int((T0 + timedelta(days=1)).timestamp()),
    ]  # oldest first, as the charts draw them
    values = [re.findall(r'data-series="(\w+)" data-value="([^"]*)"', row) for _, row in rows]
    assert values == [
        [("rank", "2"), ("products", "1"), ("median", "10.00")],
        [("rank", "1"), ("products", "3"), ("median", "12.50")],
    ]
    assert f'href="/runs/{first}/sellers/seller-b"' in page.text
    words = _text(page.text)
    assert "Seen by 2 completed runs of Acme" in words
    assert "Tools" in words
    assert "Listings in the latest run" in words
    assert "Product B000000002 ASIN B000000002 7.00 USD" in words
    assert f'href="/runs/{second}/sellers/seller-b">With margins and shipping' in page.text
    assert 'aria-label="Watch seller-b"' in page.text

    once = await signed_in.get("/sellers/seller-c")
    assert "Charts appear once a second run of this preset has seen the seller." in _text(once.text)
    assert "data-charts-for" not in once.text

    for name in ("seller-z", "SELLER-B", "x" * 101):
        missing = await signed_in.get(f"/sellers/{name}")
        assert missing.status_code == 404
        assert "No completed run of Acme saw a seller named" in html.unescape(missing.text)


async def test_another_organizations_sellers_and_who_may_star(
    client: httpx.AsyncClient, actors: Actors, database: Database, browser: BrowserFactory
) -> None:
    admin, stranger = await actors.admin(), await actors.admin("Other")
    await completed_run(client, database, stranger, listings("x"), T0)
    await completed_run(client, database, admin, listings("a"), T0)
    viewer = await actors.member(admin, "viewer")
    as_viewer = await browser(viewer)
    assert _sellers((await as_viewer.get("/sellers")).text) == ["seller-a"]
    theirs = await as_viewer.get("/sellers/seller-x")
    assert theirs.status_code == 404
    mine = await as_viewer.get("/sellers/seller-a")
    assert mine.status_code == 200
    assert "Watch seller-a" not in mine.text  # a viewer may not change the watchlist

    anonymous = await browser()
    for path in ("/sellers", "/sellers/seller-a"):
        response = await anonymous.get(path)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/sign-in")


async def test_home_cards_count_what_each_presets_latest_run_gained_and_lost(
    client: httpx.AsyncClient, actors: Actors, database: Database, browser: BrowserFactory
) -> None:
    admin = await actors.admin()
    tools = await make_preset(client, admin, "Tools")
    toys = await make_preset(client, admin, "Toys")
    _, second = await _two_runs(client, database, admin, tools)
    await completed_run(
        client, database, admin, listings("ef"), T0 + timedelta(days=2), preset_id=toys
    )
    await completed_run(  # a category list: no card
        client, database, admin, listings("g"), T0 + timedelta(days=3), categories=["9"]
    )
    signed_in = await browser(admin)

    page = await signed_in.get("/runs")
    words = _text(page.text)
    assert "Since the last run" in words
    cards = re.findall(r'<li class="card since-card">(.*?)</li>', page.text, re.S)
    assert [re.search(r"<h3><a [^>]+>([^<]+)</a>", card).group(1) for card in cards] == [  # type: ignore[union-attr]
        "Toys",
        "Tools",
    ]
    toys_card, tools_card = (_text(card) for card in cards)
    assert "2 sellers found" in toys_card
    assert "Its first completed run" in toys_card
    assert "+1 seller gained \u22121 seller lost" in tools_card
    assert "(3 sellers)" in tools_card

    changes = await client.get(f"/collection/runs/{second}/changes", headers=admin.headers)
    assert changes.status_code == 200, changes.text
    summary = changes.json()["summary"]
    assert (summary["new_sellers"], summary["gone_sellers"]) == (1, 1)

    filtered = await signed_in.get("/runs", params={"preset_id": tools})
    assert "Since the last run" not in filtered.text
