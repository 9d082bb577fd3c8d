"""What a new user tripped over in the web UI: sellers that did not refresh during a run,
a results page past the end, Run now without a preset, deleting a scheduled preset,
history times in two zones, and error pages with raw ids."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal

import httpx

from app.core.database import Database
from app.runs import sellers as run_sellers
from app.tables import RunListing
from tests.helpers.actors import Actor, Actors
from tests.helpers.browser import BrowserFactory
from tests.helpers.web import completed_run, make_preset

FETCH = {"x-requested-with": "fetch"}  # what app.js sends with the parts it refreshes


async def _listings(database: Database, run_id: str, sellers: list[str]) -> None:
    """Listings as the eBay phase writes them, one product per seller, with their sellers'
    figures."""
    for i, seller in enumerate(sellers):
        row = {
            "run_id": uuid.UUID(run_id),
            "asin": f"B0{i:08d}",
            "item_id": f"item-{i}",
            "title": "A listing",
            "price": Decimal("9.99"),
            "currency": "USD",
            "seller_username": seller,
            "seller_feedback_score": 10,
            "seller_feedback_percentage": Decimal("99.5"),
            "url": "https://www.ebay.com/itm/1",
        }
        async with database.transaction() as session:
            await session.execute(RunListing.__table__.insert(), [row])
            await run_sellers.record_products(session, uuid.UUID(run_id), [[row]])


async def _schedule(
    client: httpx.AsyncClient, admin: Actor, preset_id: str, **body: object
) -> None:
    response = await client.patch(
        "/collection/schedule",
        json={"preset_id": preset_id, "cron_expression": "@monthly", "enabled": True, **body},
        headers=admin.headers,
    )
    assert response.status_code == 200, response.text


# --- runs ---------------------------------------------------------------------------------


async def test_the_sellers_table_refreshes_while_the_run_is_active(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient, database: Database
) -> None:
    admin = await actors.admin()
    created = await client.post(
        "/collection/runs", json={"category_ids": ["5"]}, headers=admin.headers
    )
    run_id = created.json()["id"]
    signed_in = await browser(admin)

    page = await signed_in.get(f"/runs/{run_id}?sort=seller")
    section = re.search(r'<section id="sellers"[^>]*>', page.text)
    assert section, page.text
    assert f'data-live-url="/runs/{run_id}/sellers?sort=seller"' in section.group(0)
    assert "No sellers yet" in page.text

    await _listings(database, run_id, ["zeta-shop", "alpha-shop"])
    fresh = await signed_in.get(f"/runs/{run_id}/sellers?sort=seller", headers=FETCH)
    assert fresh.status_code == 200
    assert fresh.text.lstrip().startswith('<section id="sellers"')
    assert re.findall(r'<td class="seller"><a [^>]*>([^<]+)</a></td>', fresh.text) == [
        "alpha-shop",
        "zeta-shop",
    ]
    assert "data-live-url" in fresh.text

    await client.post(f"/collection/runs/{run_id}/cancel", headers=admin.headers)
    ended = await signed_in.get(f"/runs/{run_id}/sellers", headers=FETCH)
    assert "data-live-url" not in ended.text  # nothing changes any more: polling stops


async def test_a_results_page_past_the_end_says_so(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin()
    run_id = await completed_run(client, admin, ["11"])
    total = (await client.get(f"/collection/runs/{run_id}", headers=admin.headers)).json()[
        "progress"
    ]["sellers_found"]
    pages = -(-total // 25)
    signed_in = await browser(admin)

    beyond = await signed_in.get(f"/runs/{run_id}?page=99&sort=seller")
    assert beyond.status_code == 404
    assert "No page 99" in beyond.text
    assert f"This run has {total} sellers on {pages} page" in beyond.text
    assert "found no eBay listings" not in beyond.text
    last = f"/runs/{run_id}?sort=seller" + (f"&amp;page={pages}" if pages > 1 else "")
    assert f'href="{last}#sellers"' in beyond.text
    assert (await signed_in.get(f"/runs/{run_id}?page={pages}")).status_code == 200


# --- presets and the schedule ---------------------------------------------------------------


async def test_deleting_a_preset_the_schedule_uses_warns_first(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin()
    member = await actors.member(admin, "member")
    scheduled = await make_preset(client, admin, "Scheduled one")
    plain = await make_preset(client, admin, "Plain one")
    await _schedule(client, admin, scheduled)
    as_member = await browser(member)  # members manage presets but cannot see the schedule

    listing = (await as_member.get("/presets")).text
    assert listing.count(">Scheduled</span>") == 1
    assert "The schedule collects Scheduled one: deleting it stops the scheduled runs" in listing
    form = (await as_member.get(f"/presets/{scheduled}")).text
    assert "The schedule collects this preset." in form
    assert 'name="schedule_stops" value="1"' in form
    assert 'name="schedule_stops"' not in (await as_member.get(f"/presets/{plain}")).text

    # A form that did not say so (a page from before the schedule chose the preset): refused.
    refused = await as_member.submit(f"/presets/{scheduled}/delete", page="/presets")
    assert refused.status_code == 409
    assert "Not deleted: the schedule collects Scheduled one." in refused.text
    assert (await client.get(f"/collection/presets/{scheduled}", headers=admin.headers)).is_success

    deleted = await as_member.submit(
        f"/presets/{scheduled}/delete", {"schedule_stops": "1"}, page="/presets"
    )
    assert deleted.status_code == 303
    assert "The schedule has no preset now" in (await as_member.get("/presets")).text
    schedule = (await client.get("/collection/schedule", headers=admin.headers)).json()
    assert schedule["preset_id"] is None
    gone = await as_member.submit(f"/presets/{plain}/delete", page="/presets")
    assert gone.status_code == 303  # a preset no schedule uses goes at once


async def test_run_now_is_not_offered_once_the_preset_is_deleted(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin()
    preset_id = await make_preset(client, admin)
    await _schedule(client, admin, preset_id, enabled=False)
    signed_in = await browser(admin)
    button = r'<button type="submit" class="button" aria-describedby="run-now-hint" ?(disabled)?>'
    offered = re.search(button, (await signed_in.get("/schedule")).text)
    assert offered
    assert offered.group(1) is None

    await client.delete(f"/collection/presets/{preset_id}", headers=admin.headers)
    page = (await signed_in.get("/schedule")).text
    refused = re.search(button, page)
    assert refused
    assert refused.group(1) == "disabled"
    assert "The schedule has no preset" in page

    # A page loaded before the delete still posts: told what to do, in plain words.
    stale = await signed_in.submit("/schedule/run-now", page="/runs")
    assert stale.status_code == 303
    assert (
        "Not started: the schedule has no preset (it was deleted). Choose a preset"
        in (await signed_in.get("/schedule")).text
    )


async def test_schedule_history_shows_due_and_fired_in_the_schedules_zone(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin()
    preset_id = await make_preset(client, admin)
    await _schedule(client, admin, preset_id, timezone="Asia/Tokyo")
    fired = await client.post("/collection/schedule/trigger", headers=admin.headers)
    assert fired.status_code == 201, fired.text
    signed_in = await browser(admin)

    page = (await signed_in.get("/schedule")).text
    history = page[page.index('id="history-heading"') :]
    assert 'Due <span class="zone">(Asia/Tokyo)</span>' in history
    assert 'Fired <span class="zone">(Asia/Tokyo)</span>' in history
    row = history[history.index("<tbody>") : history.index("</tbody>")]
    times = re.findall(r'<time datetime="([^"]+)"( data-local)?>([^<]+)</time>', row)
    assert len(times) == 2
    for moment, local_marker, text in times:
        assert moment.endswith("+09:00")
        assert local_marker == ""  # not re-zoned by the browser
        assert text.endswith(" JST")
    await client.post(f"/collection/runs/{fired.json()['run_id']}/cancel", headers=admin.headers)


# --- error pages ----------------------------------------------------------------------------


async def test_error_pages_say_what_happened_without_raw_ids(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin("Acme")
    other = await actors.admin("Other")
    foreign_run = (
        await client.post("/collection/runs", json={"category_ids": ["5"]}, headers=other.headers)
    ).json()["id"]
    foreign_preset = await make_preset(client, other, "Theirs")
    stranger = uuid.uuid4()
    signed_in = await browser(admin)

    pages = {
        f"/runs/{foreign_run}": "This run is not in Acme",
        f"/runs/{foreign_run}/live": "This run is not in Acme",
        f"/runs/{foreign_run}/export.csv": "This run is not in Acme",
        f"/presets/{foreign_preset}": "This preset is not in Acme",
    }
    for path, message in pages.items():
        response = await signed_in.get(path)
        assert response.status_code == 404, path
        assert message in response.text, path
        assert path.split("/")[2] not in response.text, path
    forms = {
        f"/runs/{foreign_run}/cancel": "This run is not in Acme",
        f"/members/{stranger}/remove": "This person is not a member of Acme",
        f"/members/{stranger}/role": "This person is not a member of Acme",
    }
    for path, message in forms.items():
        response = await signed_in.submit(path, {"role": "viewer"})
        assert response.status_code == 404, path
        assert message in response.text, path
        assert path.split("/")[2] not in response.text, path

    preset_id = await make_preset(client, admin)
    await client.delete(f"/collection/presets/{preset_id}", headers=admin.headers)
    stale = await signed_in.submit("/runs", {"preset_id": preset_id}, page="/runs/new")
    assert stale.status_code == 404
    assert "This preset no longer exists (it was deleted): choose another." in stale.text
    assert preset_id not in stale.text.replace(f'value="{preset_id}"', "")

    words = await signed_in.submit(
        "/runs",
        {"preset_id": (await make_preset(client, admin, "Words")), "listings_per_product": "x"},
        page="/runs/new",
    )
    assert words.status_code == 400
    assert "enter a whole number" in words.text
    assert "Input should be" not in words.text
