"""The web UI through the in-process client: each page's forms and what they show (presets
with the API's messages at the field, runs with live progress and results, the schedule)."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import sqlalchemy as sa
from fastapi import FastAPI

from app.core.clock import utcnow
from app.tables import CollectionRun, RunStatus
from tests.helpers.actors import Actors
from tests.helpers.browser import BrowserFactory
from tests.helpers.web import completed_run, make_preset, wait_until

# --- presets -------------------------------------------------------------------------------------


async def test_presets_show_the_api_messages_at_the_field(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin()
    signed_in = await browser(admin)
    assert "No presets yet" in (await signed_in.get("/presets")).text

    bad = await signed_in.submit(
        "/presets", {"name": "Electronics", "category_ids": "172282, abc"}, page="/presets/new"
    )
    assert bad.status_code == 400
    assert (
        '<p class="field-error" id="category_ids-error" >'
        "must be a numeric category ID (digits only), got &#39;abc&#39;</p>"
    ) in bad.text
    assert 'id="category_ids" name="category_ids"' in bad.text
    assert "172282, abc</textarea>" in bad.text  # what was typed is kept
    assert '"detail"' not in bad.text

    created = await signed_in.submit(
        "/presets", {"name": "Electronics", "category_ids": "172282\n541966 172282"}
    )
    assert created.status_code == 303
    listing = await signed_in.get("/presets")
    assert "Preset Electronics created with 2 categories." in listing.text

    taken = await signed_in.submit("/presets", {"name": "Electronics", "category_ids": "1"})
    assert taken.status_code == 409
    assert "a preset named &#39;Electronics&#39; already exists; choose another name" in taken.text

    api_presets = (await client.get("/collection/presets", headers=admin.headers)).json()
    preset = api_presets["items"][0]
    assert preset["category_ids"] == ["172282", "541966"]

    edit = await signed_in.get(f"/presets/{preset['id']}")
    assert "172282\n541966</textarea>" in edit.text
    empty = await signed_in.submit(
        f"/presets/{preset['id']}", {"name": "Electronics", "category_ids": ""}
    )
    assert empty.status_code == 400
    assert "must list at least one category ID" in empty.text
    saved = await signed_in.submit(
        f"/presets/{preset['id']}", {"name": "Gadgets", "category_ids": "1,2,3"}
    )
    assert saved.status_code == 303
    after = await client.get(f"/collection/presets/{preset['id']}", headers=admin.headers)
    assert after.json()["name"] == "Gadgets"
    assert after.json()["category_ids"] == ["1", "2", "3"]

    deleted = await signed_in.submit(f"/presets/{preset['id']}/delete")
    assert deleted.status_code == 303
    assert "Preset Gadgets deleted." in (await signed_in.get("/presets")).text
    gone = await client.get(f"/collection/presets/{preset['id']}", headers=admin.headers)
    assert gone.status_code == 404


# --- runs ---------------------------------------------------------------------------------------


async def test_runs_list_empty_states_say_what_to_do(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin()
    signed_in = await browser(admin)
    page = await signed_in.get("/runs")
    assert "No runs yet" in page.text
    assert 'href="/presets/new">Create a preset' in page.text
    await make_preset(client, admin)
    page = await signed_in.get("/runs")
    assert 'href="/runs/new">Start a run' in page.text
    assert "No completed runs" in (await signed_in.get("/runs?status=completed")).text


async def test_a_run_from_a_preset_with_live_progress_and_results(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin()
    preset_id = await make_preset(client, admin)
    signed_in = await browser(admin)

    form = await signed_in.get(f"/runs/new?preset_id={preset_id}")
    assert f'<option value="{preset_id}" selected>' in form.text
    too_big = await signed_in.submit(
        "/runs", {"preset_id": preset_id, "products_per_category": "500"}, page="/runs/new"
    )
    assert too_big.status_code == 400
    assert "use a number no larger than 100" in too_big.text

    created = await signed_in.submit(
        "/runs",
        {"preset_id": preset_id, "name": "Web run", "products_per_category": "5", "start": "on"},
    )
    assert created.status_code == 303
    run_id = created.headers["location"].removeprefix("/runs/")
    page = await signed_in.get(f"/runs/{run_id}")
    assert "Run started" in page.text
    assert "Web run" in page.text

    await wait_until(client, admin, run_id, "completed")
    live = await signed_in.get(f"/runs/{run_id}/live")
    assert live.status_code == 200
    assert "data-live-url" not in live.text  # nothing changes any more: polling stops
    assert "data-finished" in live.text
    assert "Completed" in live.text

    page = await signed_in.get(f"/runs/{run_id}")
    api_sellers = (
        await client.get(f"/collection/runs/{run_id}/sellers?limit=25", headers=admin.headers)
    ).json()["items"]
    shown = re.findall(r'<td class="seller"><a [^>]*>([^<]+)</a></td>', page.text)
    assert shown == [s["username"] for s in api_sellers]  # the API's ranking, page one
    assert f'href="/runs/{run_id}/export.csv?kind=sellers"' in page.text
    assert "No earlier completed run of this preset to compare with" in page.text

    export = await signed_in.get(f"/runs/{run_id}/export.csv?kind=sellers")
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(export.text)))
    assert rows[0][:2] == ["rank", "seller_username"]
    assert rows[1][1] == api_sellers[0]["username"]

    duplicate = await signed_in.submit("/runs", {"preset_id": preset_id, "start": "on"})
    assert duplicate.status_code == 303  # the first one is finished: a second may run
    second = duplicate.headers["location"]
    busy = await signed_in.submit("/runs", {"preset_id": preset_id})
    if busy.status_code == 409:  # the second is still active
        assert "runs one collection at a time" in busy.text
    await wait_until(client, admin, second.removeprefix("/runs/"), "completed")


async def test_sellers_sort_paginate_and_mark_new_sellers(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin()
    # Two runs of one preset, which gained categories in between: new sellers to mark.
    preset = await client.post(
        "/collection/presets", json={"name": "Grows", "category_ids": ["11"]}, headers=admin.headers
    )
    preset_id = preset.json()["id"]
    await completed_run(client, admin, preset_id=preset_id)
    await client.patch(
        f"/collection/presets/{preset_id}",
        json={"category_ids": ["11", "12", "13"]},
        headers=admin.headers,
    )
    run_id = await completed_run(client, admin, preset_id=preset_id)
    signed_in = await browser(admin)

    def sellers_of(html: str) -> list[str]:
        return re.findall(r'<td class="seller"><a [^>]*>([^<]+)</a></td>', html)

    page = await signed_in.get(f"/runs/{run_id}")
    assert '<span class="badge new">New</span>' in page.text
    assert 'aria-sort="ascending"' in page.text  # by rank
    api = (
        await client.get(f"/collection/runs/{run_id}/sellers?limit=200", headers=admin.headers)
    ).json()
    everyone = api["items"]
    total = len(everyone)
    assert total > 25
    assert sellers_of(page.text) == [s["username"] for s in everyone[:25]]
    new_on_page = [s["username"] for s in everyone[:25] if s["new_since_last_run"]]
    marked = re.findall(
        r'<tr class="is-new">\s*<td class="num">\d+</td>\s*<td class="seller"><a [^>]*>([^<]+)',
        page.text,
    )
    assert marked == new_on_page

    second = await signed_in.get(f"/runs/{run_id}?page=2")
    assert sellers_of(second.text) == [s["username"] for s in everyone[25:50]]
    assert "Page 2 of" in second.text

    by_name = await signed_in.get(f"/runs/{run_id}?sort=seller")
    names = sorted((s["username"] for s in everyone), key=str.lower)
    assert sellers_of(by_name.text) == names[:25]
    reversed_names = await signed_in.get(f"/runs/{run_id}?sort=seller&order=desc")
    assert sellers_of(reversed_names.text) == list(reversed(names))[:25]
    by_feedback = await signed_in.get(f"/runs/{run_id}?sort=feedback")
    scores = [s["feedback_score"] for s in everyone if s["feedback_score"] is not None]
    shown_scores = [
        int(v.replace(",", ""))
        for v in re.findall(r'<td class="num">([\d,]+) <span class="muted">', by_feedback.text)
    ]
    assert shown_scores == sorted(scores, reverse=True)[: len(shown_scores)]
    # Ranks stay the ranking's, whatever the order.
    by_rank_desc = await signed_in.get(f"/runs/{run_id}?sort=rank&order=desc")
    assert f'<td class="num">{total}</td>' in by_rank_desc.text
    assert (await signed_in.get(f"/runs/{run_id}?sort=bogus&page=x")).status_code == 200


async def test_run_buttons_follow_the_allowed_transitions(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin()
    run = await client.post("/collection/runs", json={"category_ids": ["5"]}, headers=admin.headers)
    run_id = run.json()["id"]
    signed_in = await browser(admin)

    pending = await signed_in.get(f"/runs/{run_id}")
    assert f'action="/runs/{run_id}/start"' in pending.text
    assert f'action="/runs/{run_id}/cancel"' in pending.text
    assert f'action="/runs/{run_id}/pause"' not in pending.text
    assert f'action="/runs/{run_id}/resume"' not in pending.text
    assert f'data-live-url="/runs/{run_id}/live"' in pending.text

    refused = await signed_in.submit(f"/runs/{run_id}/pause", page=f"/runs/{run_id}")
    assert refused.status_code == 409
    assert "Could not pause the run: cannot pause a run that is pending" in refused.text
    assert (await signed_in.submit(f"/runs/{run_id}/explode")).status_code == 404

    cancelled = await signed_in.submit(f"/runs/{run_id}/cancel")
    assert cancelled.status_code == 303
    page = await signed_in.get(f"/runs/{run_id}")
    assert "Run cancelled" in page.text
    # nothing left to press but Run again
    assert re.findall(f'action="/runs/{run_id}/([a-z]+)"', page.text) == ["again"]
    api = await client.get(f"/collection/runs/{run_id}", headers=admin.headers)
    assert api.json()["status"] == "cancelled"


async def test_a_stopping_or_waiting_run_says_so(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await actors.admin()
    run = await client.post("/collection/runs", json={"category_ids": ["5"]}, headers=admin.headers)
    run_id = run.json()["id"]
    signed_in = await browser(admin)
    resumes_at = datetime(2027, 7, 2, 7, 0, tzinfo=UTC)
    async with app.state.instance.database.transaction() as session:
        await session.execute(
            sa.update(CollectionRun)
            .where(CollectionRun.id == uuid.UUID(run_id))
            .values(
                status=RunStatus.PAUSING,
                lease_owner="elsewhere:1",
                lease_expires_at=utcnow() + timedelta(minutes=5),
                resumes_at=resumes_at,
                waiting_for="eBay's daily call limit (eBay reports 0 of 5000 calls left)",
            )
        )
    page = await signed_in.get(f"/runs/{run_id}")
    assert "Pausing: no new searches start" in page.text
    assert 'class="badge status-pausing"' in page.text
    assert (
        "Waiting for eBay&#39;s daily call limit (eBay reports 0 of 5000 calls left). "
        "Continues at" in page.text
    )
    assert "2027-07-02T07:00:00+00:00" in page.text
    assert f'action="/runs/{run_id}/resume"' in page.text
    assert f'action="/runs/{run_id}/cancel"' in page.text
    assert f'action="/runs/{run_id}/pause"' not in page.text
    assert f'data-live-url="/runs/{run_id}/live"' in page.text  # still changing

    cancelling = await signed_in.submit(f"/runs/{run_id}/cancel")
    assert cancelling.status_code == 303
    page = await signed_in.get(f"/runs/{run_id}")
    assert "Cancelling: no new searches start" in page.text
    assert f'action="/runs/{run_id}/' not in page.text  # nothing left to press


# --- schedule -------------------------------------------------------------------------------


async def test_schedule_form_shows_api_errors_at_the_field_and_saves(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin()
    preset_id = await make_preset(client, admin)
    signed_in = await browser(admin)

    page = await signed_in.get("/schedule")
    assert "At 00:00 on day 1 of every month" in page.text  # the default, described
    assert page.text.count('<li><time datetime="') == 5  # and its next five times
    assert '<option value="Europe/Berlin">' in page.text
    for not_a_zone in ("localtime", "posixrules", "Factory"):  # the API would refuse them
        assert f'<option value="{not_a_zone}">' not in page.text
    assert "Nothing has fired yet" in page.text

    form = {
        "preset_id": preset_id,
        "cron_expression": "0 9 * * 1-5",
        "timezone": "Europe/Berlin",
        "enabled": "on",
    }
    bad_cron = await signed_in.submit(
        "/schedule", {**form, "cron_expression": "0 25 * * *"}, page="/schedule"
    )
    assert bad_cron.status_code == 400
    error = re.search(r'id="cron_expression-error" >([^<]+)</p>', bad_cron.text)
    assert error
    assert "hour" in error.group(1)
    assert "25" in error.group(1)
    assert 'value="0 25 * * *"' in bad_cron.text
    bad_zone = await signed_in.submit(
        "/schedule", {**form, "timezone": "Mars/Olympus"}, page="/schedule"
    )
    assert bad_zone.status_code == 400
    assert re.search(r'id="timezone-error" >[^<]*Mars/Olympus', bad_zone.text)
    no_preset = await signed_in.submit("/schedule", {**form, "preset_id": ""}, page="/schedule")
    assert "Choose a preset: an enabled schedule needs one." in no_preset.text
    schedule = await client.get("/collection/schedule", headers=admin.headers)
    assert schedule.json()["id"] is None  # nothing was saved

    saved = await signed_in.submit("/schedule", {**form, "notify_email": "on"}, page="/schedule")
    assert saved.status_code == 303
    page = await signed_in.get("/schedule")
    assert "Schedule saved: Electronics runs next on" in page.text
    schedule = (await client.get("/collection/schedule", headers=admin.headers)).json()
    assert schedule["cron_expression"] == "0 9 * * 1-5"
    assert schedule["timezone"] == "Europe/Berlin"
    assert schedule["enabled"]
    assert schedule["notify_email"]

    toggled = await signed_in.submit("/schedule", {**form, "enabled": ""}, page="/schedule")
    assert toggled.status_code == 303
    assert "It is disabled" in (await signed_in.get("/schedule")).text
    schedule = (await client.get("/collection/schedule", headers=admin.headers)).json()
    assert not schedule["enabled"]
    assert not schedule["notify_email"]


async def test_schedule_preview_fragment(browser: BrowserFactory, actors: Actors) -> None:
    admin = await actors.admin()
    signed_in = await browser(admin)
    fetch = {"X-Requested-With": "fetch"}
    good = await signed_in.get(
        "/schedule/preview?cron_expression=30 8 * * 1-5&timezone=America/New_York", headers=fetch
    )
    assert good.status_code == 200
    assert "data-error" not in good.text
    assert good.text.count("<li>") == 5
    assert "EST" in good.text or "EDT" in good.text
    bad = await signed_in.get("/schedule/preview?cron_expression=61 * * * *&timezone=UTC")
    assert 'data-error-field="cron_expression"' in bad.text
    assert "61" in bad.text
    zone = await signed_in.get("/schedule/preview?cron_expression=@daily&timezone=Nowhere")
    assert 'data-error-field="timezone"' in zone.text
    long = await signed_in.get(f"/schedule/preview?cron_expression={'1' * 300}&timezone=UTC")
    assert "at most 200 characters" in long.text


async def test_run_now_and_history_link_to_runs(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin()
    signed_in = await browser(admin)
    early = await signed_in.submit("/schedule/run-now", page="/schedule")
    assert early.status_code == 303
    assert "Save the schedule (with a preset) first" in (await signed_in.get("/schedule")).text

    preset_id = await make_preset(client, admin)
    await client.patch(
        "/collection/schedule",
        json={"preset_id": preset_id, "cron_expression": "@monthly", "enabled": True},
        headers=admin.headers,
    )
    started = await signed_in.submit("/schedule/run-now", page="/schedule")
    assert started.status_code == 303
    run_path = started.headers["location"]
    assert run_path.startswith("/runs/")
    skipped = await signed_in.submit("/schedule/run-now", page="/schedule")
    assert skipped.headers["location"] == "/schedule"
    page = await signed_in.get("/schedule")
    assert "Not started: another run is active" in page.text
    assert f'href="{run_path}">View run</a>' in page.text
    assert f'href="{run_path}">Active run</a>' in page.text
    assert "outcome-skipped" in page.text
    assert "outcome-started" in page.text
    await client.post(f"/collection{run_path}/cancel", headers=admin.headers)
