"""The runs list filtered by preset, trigger, status and days in the reader's time zone,
the form keeping what was chosen, and moments written one way on every page, in the
reader's zone once app.js has recorded it."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any

import httpx

from app.web.rendering import ZONE_COOKIE
from tests.helpers.actors import Actor
from tests.helpers.browser import Browser, BrowserFactory
from tests.helpers.scheduling import EPOCH, FakeClock
from tests.helpers.web import make_preset


async def _run(client: httpx.AsyncClient, admin: Actor, **body: Any) -> str:
    response = await client.post(
        "/collection/runs", json=body or {"category_ids": ["1"]}, headers=admin.headers
    )
    assert response.status_code == 201, response.text
    run_id: str = response.json()["id"]
    await client.post(f"/collection/runs/{run_id}/cancel", headers=admin.headers)
    return run_id


def _listed(page: str) -> list[str]:
    return re.findall(r'<td class="run-name"><a href="/runs/([^"]+)">', page)


def _field_error(page: str, name: str) -> str:
    match = re.search(f'<p class="field-error" id="{name}-error" >([^<]*)</p>', page)
    assert match, page
    return html.unescape(match.group(1))


async def _tokyo(browser: BrowserFactory, admin: Actor) -> Browser:
    signed_in = await browser(admin)
    signed_in.http.cookies.set(ZONE_COOKIE, "Asia/Tokyo")
    return signed_in


async def test_the_list_is_filtered_and_the_form_keeps_the_filter(
    client: httpx.AsyncClient, admin: Actor, clock: FakeClock, browser: BrowserFactory
) -> None:
    electronics = await make_preset(client, admin, "Electronics")
    toys = await make_preset(client, admin, "Toys")
    clock.set(EPOCH)  # 2027-01-15 21:00 in Tokyo
    early = await _run(client, admin, preset_id=electronics)
    clock.set(EPOCH + timedelta(hours=5))  # 2027-01-16 02:00 in Tokyo, still the 15th in UTC
    late = await _run(client, admin, preset_id=electronics)
    clock.set(EPOCH + timedelta(hours=6))
    other = await _run(client, admin, preset_id=toys)
    signed_in = await _tokyo(browser, admin)

    page = await signed_in.get("/runs")
    assert _listed(page.text) == [other, late, early]
    assert "Electronics · 2 categories" in html.unescape(page.text)
    assert "Days in your time zone (<span data-viewer-zone>Asia/Tokyo</span>)" in page.text

    chosen = await signed_in.get(
        f"/runs?preset_id={electronics}&status=cancelled&trigger=manual&since=2027-01-16&until=2027-01-16"
    )
    assert chosen.status_code == 200
    assert _listed(chosen.text) == [late]
    assert f'<option value="{electronics}" selected>Electronics</option>' in chosen.text
    assert '<option value="cancelled" selected>' in chosen.text
    assert '<option value="manual" selected>' in chosen.text
    assert 'name="since" type="date" value="2027-01-16"' in chosen.text
    assert 'href="/runs">Clear filters</a>' in chosen.text
    # "to" includes its day
    assert _listed((await signed_in.get("/runs?until=2027-01-15")).text) == [early]
    # in UTC both are of the 15th
    in_utc = await browser(admin)
    assert _listed((await in_utc.get("/runs?since=2027-01-15&until=2027-01-15")).text) == [
        other,
        late,
        early,
    ]

    nothing = await signed_in.get("/runs?status=running&trigger=schedule")
    assert "No running runs match these filters" in nothing.text
    assert (await signed_in.get("/runs?trigger=schedule")).text.count(
        "No runs match this filter"
    ) == 1

    # a deleted preset's runs can still be listed
    await client.delete(f"/collection/presets/{toys}", headers=admin.headers)
    gone = await signed_in.get(f"/runs?preset_id={toys}")
    assert _listed(gone.text) == [other]
    assert f'<option value="{toys}" selected>A deleted preset</option>' in gone.text
    assert "a deleted preset · 2 categories" in html.unescape(gone.text)


async def test_filters_that_cannot_be_read_are_explained_at_their_field(
    client: httpx.AsyncClient, admin: Actor, browser: BrowserFactory
) -> None:
    run_id = await _run(client, admin)
    signed_in = await browser(admin)
    for query, field, message in [
        ("since=15/01/2027", "since", "enter a date as YYYY-MM-DD"),
        ("until=2027-02-30", "until", "enter a date as YYYY-MM-DD"),
        ("until=9999-12-31", "until", "enter a real date"),
        ("since=2027-01-16&until=2027-01-15", "until", "the end date is before the start date"),
        ("status=done", "status", "choose a status from the list (pending, running"),
        ("trigger=cron", "trigger", "choose a trigger from the list (manual, schedule, backfill)"),
        ("preset_id=toys", "preset_id", "choose a preset from the list"),
    ]:
        page = await signed_in.get(f"/runs?{query}")
        assert page.status_code == 400, query
        assert message in _field_error(page.text, field), query
        assert f'id="{field}"' in page.text
        assert 'aria-invalid="true"' in page.text
    # what could be read still filters; what could not is left out
    partly = await signed_in.get("/runs?status=cancelled&since=yesterday")
    assert partly.status_code == 400
    assert _listed(partly.text) == [run_id]


async def test_pages_of_a_filtered_list_keep_the_filter(
    client: httpx.AsyncClient, admin: Actor, clock: FakeClock, browser: BrowserFactory
) -> None:
    for minute in range(27):
        clock.set(EPOCH + timedelta(minutes=minute))
        await _run(client, admin, category_ids=["1" if minute % 9 else "2"])
    signed_in = await browser(admin)
    first = await signed_in.get("/runs?status=cancelled&since=2027-01-15")
    assert len(_listed(first.text)) == 25
    older = re.search(r'<a href="([^"]+)">Older runs', first.text)
    assert older
    link = html.unescape(older.group(1))
    assert "status=cancelled" in link
    assert "since=2027-01-15" in link
    rest = await signed_in.get(link)
    assert len(_listed(rest.text)) == 2
    assert 'href="/runs?status=cancelled&amp;since=2027-01-15">← Newest runs' in rest.text


async def test_moments_are_written_one_way_in_the_readers_zone(
    client: httpx.AsyncClient, admin: Actor, clock: FakeClock, browser: BrowserFactory
) -> None:
    clock.set(EPOCH)
    run_id = await _run(client, admin)
    signed_in = await _tokyo(browser, admin)
    page = (await signed_in.get(f"/runs/{run_id}")).text
    created = re.search(r"<dt>Created</dt><dd>(<time[^>]*>[^<]*</time>)", page)
    assert created
    assert created.group(1) == (
        '<time datetime="2027-01-15T12:00:00+00:00" data-local data-zone="Asia/Tokyo" '
        'title="Fri 2027-01-15 12:00 UTC">Fri 2027-01-15 21:00 JST</time>'
    )
    # no zone recorded yet, or one this server does not know: UTC, for app.js to rewrite
    for cookie in (None, "Mars/Olympus_Mons", "../../etc/passwd"):
        reader = await browser(admin)
        if cookie:
            reader.http.cookies.set(ZONE_COOKIE, cookie)
        page = (await reader.get(f"/runs/{run_id}")).text
        assert (
            '<time datetime="2027-01-15T12:00:00+00:00" data-local data-zone="UTC" '
            'title="Fri 2027-01-15 12:00 UTC">Fri 2027-01-15 12:00 UTC</time>'
        ) in page
    listed = (await signed_in.get("/runs")).text
    assert ">Fri 2027-01-15 21:00 JST</time>" in listed  # the list's Finished column
