"""The schedules pages: the list with every schedule's next fire, policy and pause note; the
form (new and edit) with the API's messages at the field; pause with a note, resume, run
now, delete; permissions and tenancy; the 30-day calendar's overlaps (as pure functions and
on the page); and the pages in Chromium at phone width."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.scheduling.cron import parse
from app.scheduling.settings import Timing, jitter_offset
from app.tables import OverlapPolicy
from app.web.rendering import span
from app.web.schedule_calendar import (
    CalendarSchedule,
    Fire,
    find_overlaps,
    run_length_estimates,
    upcoming_fires,
)
from tests.helpers.actors import Actor, Actors
from tests.helpers.browser import BrowserFactory
from tests.helpers.scheduling import EPOCH, FakeClock
from tests.helpers.web import make_preset

SKIP, QUEUE, REPLACE = OverlapPolicy.SKIP, OverlapPolicy.BUFFER_ONE, OverlapPolicy.CANCEL_OTHER


def _text(html: str) -> str:
    """The page's words, tags dropped and spaces folded: what a reader sees."""
    words = " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())
    return re.sub(r" (?=[:;,.)])", "", words)


def _field_error(html: str, name: str) -> str:
    match = re.search(rf'id="{name}-error" >([^<]*)</p>', html)
    assert match, f"no message at {name}"
    return unescape(match.group(1))


async def _create(client: httpx.AsyncClient, admin: Actor, **body: Any) -> dict[str, Any]:
    response = await client.post("/collection/schedules", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


FORM = {
    "name": "Monthly electronics",
    "cron_expression": "0 6 1 * *",
    "timezone": "Europe/Berlin",
    "overlap_policy": "skip",
    "jitter_seconds": "300",
    "enabled": "on",
    "starts_at": "",
    "ends_at": "",
    "remaining_runs": "",
}


# --- the pages through the in-process client --------------------------------------------


async def test_create_edit_pause_resume_and_delete_a_schedule(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    admin = await actors.admin()
    preset_id = await make_preset(client, admin)
    signed_in = await browser(admin)
    empty = await signed_in.get("/schedules")
    assert empty.status_code == 200
    assert "No schedules yet" in empty.text

    new = await signed_in.get("/schedules/new")
    assert 'id="jitter_seconds" name="jitter_seconds" type="number"' in new.text
    assert 'value="300"' in new.text  # the default, and the page says why
    assert "do not all call the marketplaces in the same second" in _text(new.text)
    assert new.text.count('<li><time datetime="') == 5  # the live preview, first drawn

    # Refused, with each message at its field and everything typed kept.
    bad = await signed_in.submit(
        "/schedules",
        {**FORM, "jitter_seconds": "abc", "starts_at": "2027-03-28T02:30", "remaining_runs": "0"},
        page="/schedules/new",
    )
    assert bad.status_code == 400
    assert _field_error(bad.text, "preset_id") == "Choose a preset: each schedule runs one."
    assert _field_error(bad.text, "jitter_seconds") == "enter a whole number, such as 20"
    assert "does not exist in Europe/Berlin" in _field_error(bad.text, "starts_at")
    assert _field_error(bad.text, "remaining_runs") == "use a number of at least 1"
    assert 'value="Monthly electronics"' in bad.text
    assert 'value="abc"' in bad.text
    assert 'value="2027-03-28T02:30"' in bad.text
    bad_cron = await signed_in.submit(
        "/schedules", {**FORM, "preset_id": preset_id, "cron_expression": "0 25 * * *"}
    )
    assert bad_cron.status_code == 400
    assert "25" in _field_error(bad_cron.text, "cron_expression")
    assert (await client.get("/collection/schedules", headers=admin.headers)).json()["items"] == []

    created = await signed_in.submit(
        "/schedules", {**FORM, "preset_id": preset_id, "starts_at": "2027-02-01T00:00"}
    )
    assert created.status_code == 303
    assert created.headers["location"] == "/schedules"
    (schedule,) = (await client.get("/collection/schedules", headers=admin.headers)).json()["items"]
    assert schedule["jitter_seconds"] == 300
    assert schedule["is_default"]  # the organization's first
    assert schedule["starts_at"] == "2027-01-31T23:00:00Z"  # read in Europe/Berlin
    listing = await signed_in.get("/schedules")
    words = _text(listing.text)
    assert "Schedule Monthly electronics created: it runs next on Mon 2027-02-01 at 06:0" in words
    assert "At 06:00 on day 1 of every month (Europe/Berlin)" in words
    offset = jitter_offset(uuid.UUID(schedule["id"]), 300)  # its own, from its id
    assert f"+{span(offset)} after each cron time" in words
    assert "Skip: The fire is skipped (and logged) while another run is active." in words
    assert "from Mon 2027-02-01 00:00 CET" in words
    # The next fire in the schedule's zone, and marked for app.js to show in the reader's.
    assert re.search(r'<time datetime="2027-02-01T06:0\d:\d\d[.\d]*\+01:00">', listing.text)
    assert re.search(
        r'<time datetime="2027-02-01T05:0\d:\d\d[.\d]*\+00:00" data-local data-zone="UTC"',
        listing.text,
    )
    assert "Default" in words

    # Edited: the form shows the saved values, in the schedule's zone.
    path = f"/schedules/{schedule['id']}"
    edit = await signed_in.get(path)
    assert 'value="2027-02-01T00:00"' in edit.text
    assert 'data-preview-url="/schedule/preview"' in edit.text
    changed = await signed_in.submit(
        path,
        {**FORM, "name": "Electronics", "overlap_policy": "buffer_one", "jitter_seconds": "0",
         "starts_at": "2027-02-01T00:00", "ends_at": "2027-01-01T00:00", "remaining_runs": "3"},
        page=path,
    )  # fmt: skip
    assert changed.status_code == 400
    assert _field_error(changed.text, "ends_at") == "must be later than starts_at"
    assert 'value="buffer_one" checked' in changed.text
    saved = await signed_in.submit(
        path,
        {**FORM, "name": "Electronics", "overlap_policy": "buffer_one", "jitter_seconds": "0",
         "starts_at": "2027-02-01T00:00", "remaining_runs": "3"},
        page=path,
    )  # fmt: skip
    assert saved.status_code == 303
    after = (await client.get(f"/collection{path}", headers=admin.headers)).json()
    assert (after["name"], after["overlap_policy"], after["jitter_seconds"]) == (
        "Electronics", "buffer_one", 0,
    )  # fmt: skip
    assert after["starts_at"] == "2027-01-31T23:00:00Z"
    assert after["remaining_runs"] == 3
    words = _text((await signed_in.get("/schedules")).text)
    assert "Queue one: The fire waits" in words
    assert "none: fires on the cron time" in words
    assert "3 scheduled runs left" in words

    # Paused with a note (required), shown with who and when; then resumed.
    no_note = await signed_in.submit(f"{path}/pause", {"paused_note": "  "}, page=path)
    assert no_note.status_code == 400
    assert "Say why you pause it" in _field_error(no_note.text, "paused_note")
    too_long = await signed_in.submit(f"{path}/pause", {"paused_note": "x" * 501}, page=path)
    assert _field_error(too_long.text, "paused_note") == "use at most 500 characters"
    clock.set(EPOCH + timedelta(hours=1))
    paused = await signed_in.submit(f"{path}/pause", {"paused_note": "eBay quota gone"}, page=path)
    assert paused.status_code == 303
    words = _text((await signed_in.get("/schedules")).text)
    assert "Schedule Electronics paused: “eBay quota gone”." in words
    assert f"Paused by {admin.email} on Fri 2027-01-15 14:00 CET: eBay quota gone" in words
    assert "none while paused" in words
    assert f"Paused by {admin.email}" in _text((await signed_in.get(path)).text)
    resumed = await signed_in.submit(f"{path}/resume", {"next": "/schedules"}, page=path)
    assert resumed.headers["location"] == "/schedules"
    words = _text((await signed_in.get("/schedules")).text)
    assert "Schedule Electronics resumed: it runs next on Mon 2027-02-01 at 06:00:00 CET." in words
    assert "eBay quota gone" not in words

    deleted = await signed_in.submit(f"{path}/delete", page=path)
    assert deleted.status_code == 303
    assert "Schedule Electronics deleted; the runs it started are kept." in _text(
        (await signed_in.get("/schedules")).text
    )
    assert (await signed_in.get(path)).status_code == 404


async def test_run_now_and_the_latest_fires_of_a_schedule(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin()
    preset_id = await make_preset(client, admin)
    schedule = await _create(
        client, admin, name="Weekly", preset_id=preset_id, timezone="Asia/Tokyo"
    )
    path = f"/schedules/{schedule['id']}"
    signed_in = await browser(admin)

    started = await signed_in.submit(f"{path}/run-now", page=path)
    assert started.status_code == 303
    run_path = started.headers["location"]
    assert run_path.startswith("/runs/")
    skipped = await signed_in.submit(f"{path}/run-now", page=path)
    assert skipped.headers["location"] == path
    page = (await signed_in.get(path)).text
    assert "Not started: another run is active" in page
    history = page[page.index('id="history-heading"') :]
    assert 'Due <span class="zone">(Asia/Tokyo)</span>' in history
    assert f'href="{run_path}">View run</a>' in history
    assert f'href="{run_path}">Active run</a>' in history
    assert "outcome-skipped" in history
    # The list shows the last outcome with its run.
    listing = await signed_in.get("/schedules")
    assert f'href="{run_path}">Active run</a>' in listing.text
    await client.post(f"/collection{run_path}/cancel", headers=admin.headers)


async def test_schedules_pages_are_for_admins_of_the_organization(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient
) -> None:
    admin = await actors.admin("Acme")
    member = await actors.member(admin, "member")
    other = await actors.admin("Other")
    theirs = await _create(client, other, name="Theirs", preset_id=await make_preset(client, other))
    ours = await _create(client, admin, name="Ours", preset_id=await make_preset(client, admin))
    as_admin, as_member = await browser(admin), await browser(member)

    assert (
        'href="/schedules" aria-current="page">Schedules</a>'
        in (await as_admin.get("/schedules")).text
    )
    assert 'href="/schedules"' not in (await as_member.get("/runs")).text
    for path in ("/schedules", "/schedules/new", f"/schedules/{ours['id']}"):
        refused = await as_member.get(path)
        assert refused.status_code == 403, path
        assert "permission &#39;admin.automation&#39;" in refused.text
    for action in ("pause", "resume", "run-now", "delete"):
        refused = await as_member.submit(f"/schedules/{ours['id']}/{action}", {"paused_note": "x"})
        assert refused.status_code == 403, action
    assert (await as_member.submit("/schedules", {**FORM})).status_code == 403

    for path in (f"/schedules/{theirs['id']}", f"/schedules/{uuid.uuid4()}", "/schedules/nope"):
        missing = await as_admin.get(path)
        assert missing.status_code == 404, path
        assert theirs["id"] not in missing.text
    assert "This schedule is not in Acme" in (await as_admin.get(f"/schedules/{theirs['id']}")).text
    for action in ("pause", "resume", "run-now", "delete"):
        refused = await as_admin.submit(f"/schedules/{theirs['id']}/{action}", {"paused_note": "x"})
        assert refused.status_code == 404, action
    changed = await as_admin.submit(f"/schedules/{theirs['id']}", {**FORM, "name": "Mine"})
    assert changed.status_code == 404
    still = (
        await client.get(f"/collection/schedules/{theirs['id']}", headers=other.headers)
    ).json()
    assert (still["name"], still["enabled"]) == ("Theirs", True)
    assert "Theirs" not in (await as_admin.get("/schedules")).text


async def test_the_calendar_marks_two_schedules_due_while_one_run_goes(
    browser: BrowserFactory, actors: Actors, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    admin = await actors.admin()
    preset_id = await make_preset(client, admin)
    common = {"preset_id": preset_id, "cron_expression": "0 0 * * 1", "jitter_seconds": 0}
    await _create(client, admin, name="Alpha", **common)
    await _create(client, admin, name="Beta", overlap_policy="cancel_other", **common)
    await _create(client, admin, name="Gamma", cron_expression="0 12 * * 1", preset_id=preset_id)
    await _create(client, admin, name="Delta", enabled=False, **common)
    signed_in = await browser(admin)

    response = await signed_in.get("/schedules?zone=Asia/Tokyo")
    assert response.status_code == 200
    page = response.text
    strip = page[page.index('class="strip"') : page.index('id="overlaps-heading"')]
    assert strip.count('<h3 class="day-head">') == 30
    # Four Mondays from Fri 2027-01-15 to Sat 2027-02-13, none of the paused Delta.
    assert strip.count('<span class="fire-name">Alpha</span>') == 4
    assert strip.count("Delta") == 0
    assert strip.count('class="fire sched-') == 12
    assert strip.count(' overlap"') == 4  # Beta's, each Monday, labelled in words too
    assert _text(strip).count("⚠ Replaced: due while the run of Alpha would still be going") == 4
    words = _text(page[page.index('id="overlaps-heading"') :])
    assert (
        "Mon 18 Jan 09:00 JST: Beta is due while the run of Alpha (from 09:00, until about "
        "Mon 09:30) would still be going. Its policy, Replace: that run is cancelled (its "
        "results so far kept) and this one starts."
    ) in words
    assert "Gamma" not in words.split("How long a run takes")[0]  # noon: long after
    assert "Alpha: 30 min (no completed run yet: a default of 30 min)" in words

    wrong = await signed_in.get("/schedules?zone=Mars/Olympus")
    assert "unknown time zone &#39;Mars/Olympus&#39;" in wrong.text
    assert "The days are in UTC instead." in wrong.text


# --- the calendar's rules, as pure functions ----------------------------------------------

T0 = datetime(2027, 3, 1, 0, 0, tzinfo=UTC)
A, B, C = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def _fire(schedule_id: uuid.UUID, minutes: int, policy: OverlapPolicy = SKIP) -> Fire:
    at = T0 + timedelta(minutes=minutes)
    name = {A: "A", B: "B", C: "C"}[schedule_id]
    return Fire(schedule_id, name, at, at, policy)


def _found(fires: list[Fire], minutes: dict[uuid.UUID, int]) -> list[tuple[str, str, str, int]]:
    lengths = {key: timedelta(minutes=value) for key, value in minutes.items()}
    return [
        (o.first.name, o.second.name, o.outcome, int((o.second.at - T0).total_seconds() // 60))
        for o in find_overlaps(fires, lengths)
    ]


def test_a_fire_while_the_estimated_run_goes_is_an_overlap_its_policy_settles() -> None:
    lengths = {A: 30, B: 30, C: 30}
    # B at 00:29 is due while A's run (00:00-00:30) goes; at 00:30 it has ended.
    assert _found([_fire(A, 0), _fire(B, 29)], lengths) == [("A", "B", "skipped", 29)]
    assert _found([_fire(A, 0), _fire(B, 30)], lengths) == []
    assert _found([_fire(B, 29), _fire(A, 0)], lengths) == [("A", "B", "skipped", 29)]  # order
    # The same schedule due again while its own run goes (a run longer than its period).
    assert _found([_fire(A, 0), _fire(A, 20)], lengths) == [("A", "A", "skipped", 20)]
    # Skipped: A's run still decides; C at 00:40 is free (A ended at 00:30).
    assert _found([_fire(A, 0), _fire(B, 10), _fire(C, 40)], lengths) == [("A", "B", "skipped", 10)]
    # Replaced: B's run starts at 00:10 instead, so C at 00:35 meets B's run.
    assert _found([_fire(A, 0), _fire(B, 10, REPLACE), _fire(C, 35)], lengths) == [
        ("A", "B", "replaced", 10),
        ("B", "C", "skipped", 35),
    ]
    # Queued: B starts when A ends (00:30) and goes until 01:00; one waits per schedule.
    assert _found(
        [_fire(A, 0), _fire(B, 10, QUEUE), _fire(B, 20, QUEUE), _fire(C, 50)], lengths
    ) == [("A", "B", "queued", 10), ("A", "B", "skipped", 20), ("B", "C", "skipped", 50)]
    # Each schedule's own estimate: a short A leaves room for B.
    assert _found([_fire(A, 0), _fire(B, 10)], {A: 5, B: 30}) == []


def test_run_lengths_are_estimated_from_the_presets_runs_then_all_runs_then_a_default() -> None:
    preset, other = uuid.uuid4(), uuid.uuid4()
    runs = [(preset, timedelta(minutes=m)) for m in (10, 12, 50)] + [(other, timedelta(hours=2))]
    estimates = run_length_estimates(
        [(A, preset, "Electronics"), (B, uuid.uuid4(), "New"), (C, None, None)], runs
    )
    assert estimates[A].length == timedelta(minutes=12)  # the median: one slow run is no skew
    assert estimates[A].basis == "the median of the last 3 completed runs of preset Electronics"
    assert estimates[B].length == timedelta(minutes=31)  # all four: (12 + 50) / 2
    assert estimates[B].basis.startswith("no completed run of its preset yet")
    assert estimates[C].length == timedelta(minutes=31)
    none = run_length_estimates([(A, preset, "Electronics")], [])
    assert none[A].length == timedelta(minutes=30)
    assert none[A].basis == "no completed run yet: a default"


def test_upcoming_fires_follow_the_engines_timing_and_are_capped() -> None:
    def schedule(expression: str, **extra: Any) -> CalendarSchedule:
        offset = extra.pop("offset", timedelta(0))
        bounds = {"starts_at": extra.pop("starts_at", None), "ends_at": extra.pop("ends_at", None)}
        timing = Timing(parse(expression, "Europe/Berlin"), offset, **bounds)
        return CalendarSchedule(A, "A", timing, SKIP, **extra)

    end = T0 + timedelta(days=30)
    daily = upcoming_fires(schedule("0 6 * * *", offset=timedelta(seconds=133)), T0, end)
    assert len(daily.fires) == 30
    assert daily.fires[0].due == datetime(2027, 3, 1, 5, 0, tzinfo=UTC)  # 06:00 CET
    assert daily.fires[0].at == daily.fires[0].due + timedelta(seconds=133)  # with jitter
    assert daily.fires[-1].due == datetime(2027, 3, 30, 4, 0, tzinfo=UTC)  # 06:00 CEST
    assert (daily.more, daily.more_is_lower_bound) == (0, False)

    hourly = upcoming_fires(schedule("0 * * * *"), T0, end)
    assert (len(hourly.fires), hourly.more, hourly.more_is_lower_bound) == (
        100,
        619,
        False,
    )  # 719 hours after T0
    minutely = upcoming_fires(schedule("* * * * *"), T0, end, counted=500)
    assert (len(minutely.fires), minutely.more, minutely.more_is_lower_bound) == (100, 400, True)
    limited = upcoming_fires(schedule("0 6 * * *", remaining_runs=3), T0, end)
    assert (len(limited.fires), limited.stops_after_remaining) == (3, True)
    bounded = upcoming_fires(
        schedule("0 6 * * *", starts_at=T0 + timedelta(days=10), ends_at=T0 + timedelta(days=12)),
        T0,
        end,
    )
    assert [fire.due.day for fire in bounded.fires] == [11, 12]


# --- in Chromium ------------------------------------------------------------------------------

SHOTS = Path("/tmp/shots")  # noqa: S108 (screenshots for a person to look at)
LONG_NAME = "ElectronicsAccessoriesComputerPeripheralsAndHomeOfficeGamingSetups" + "X" * 33
SEEDED = (  # name, cron, zone, more
    (LONG_NAME, "0 0 1 * *", "America/Argentina/ComodRivadavia", {}),
    ("Every Monday morning", "0 6 * * 1", "Europe/Berlin", {"overlap_policy": "buffer_one"}),
    ("Weekday mornings", "10 6 * * 1-5", "Europe/Berlin", {"overlap_policy": "cancel_other"}),
    ("Hourly checks", "0 * * * *", "UTC", {"remaining_runs": 500}),
)


async def _seed_schedules(url: str, env: dict[str, str]) -> tuple[str, list[str]]:
    """An organization with a preset and the schedules above (the first one paused with a
    long note), through the API of the running server; the admin's token and the ids."""
    from tests.helpers.processes import run_cli

    boot = json.loads(
        await asyncio.to_thread(run_cli, env, "bootstrap", "--org", "Acme", "--email", "a@b.io")
    )
    headers = {"Authorization": f"Bearer {boot['token']}", "X-Org-Id": boot["org_id"]}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as api:
        preset = await api.post(
            "/collection/presets", json={"name": LONG_NAME, "category_ids": ["172282"]}
        )
        ids = []
        for name, cron, zone, more in SEEDED:
            body = {"name": name, "preset_id": preset.json()["id"], "cron_expression": cron}
            created = await api.post(
                "/collection/schedules", json={**body, "timezone": zone, **more}
            )
            assert created.status_code == 201, created.text
            ids.append(created.json()["id"])
        note = "Paused while the eBay quota is renegotiated; back on the 5th " + "y" * 80
        paused = await api.patch(
            f"/collection/schedules/{ids[0]}", json={"enabled": False, "paused_note": note}
        )
        assert paused.status_code == 200, paused.text
    return boot["token"], ids


@pytest.mark.slow
async def test_the_schedules_pages_in_chromium_at_phone_and_desktop_width(
    server: Any, chromium: Any
) -> None:
    from tests.helpers.chromium import TIMEOUT_MS, WIDE_ELEMENTS, expect

    process, env = server
    token, ids = await _seed_schedules(process.url, env)
    await asyncio.to_thread(SHOTS.mkdir, exist_ok=True)

    async def no_sideways_scroll(page: Any, width: int, name: str) -> None:
        await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
        scrolled = await page.evaluate("document.scrollingElement.scrollWidth")
        assert scrolled <= width, (name, await page.evaluate(WIDE_ELEMENTS))

    for width, device in ((390, "phone"), (1280, "desktop")):
        context = await chromium.new_context(
            viewport={"width": width, "height": 900},
            is_mobile=width < 500,
            locale="en-US",
            timezone_id="Asia/Tokyo",
        )
        context.set_default_timeout(TIMEOUT_MS)
        page = await context.new_page()
        try:
            await page.goto(f"{process.url}/sign-in")
            await page.get_by_label("Access token").fill(token)
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible()
            await page.get_by_role("link", name="Schedules", exact=True).click()
            await expect(page.get_by_role("heading", name="Schedules", exact=True)).to_be_visible()
            await expect(page.locator(".strip .fire").first).to_be_visible()
            # The next fire in the reader's zone too (app.js), named.
            card = page.locator(".schedule-card", has_text="Every Monday morning")
            await expect(card.locator("time").nth(1)).to_contain_text("GMT+9")
            await expect(page.locator(".pause-note")).to_contain_text("eBay quota")
            await no_sideways_scroll(page, width, f"schedules-{device}")
            strip = page.locator(".strip-wrap")  # scrolls inside itself, not the page
            assert await strip.evaluate("e => e.scrollWidth > e.clientWidth")

            await page.goto(f"{process.url}/schedules/{ids[1]}")
            cron = page.get_by_label("Cron expression")
            await cron.fill("30 8 * * 1-5")
            await expect(page.locator("#cron-preview .description")).to_contain_text("08:30")
            await expect(page.locator("#cron-preview li").first).to_contain_text(
                re.compile(r"08:30 CES?T")
            )
            await cron.fill("30 8 * * 9")
            await expect(page.locator("#cron_expression-error")).to_contain_text("9")
            await expect(cron).to_have_attribute("aria-invalid", "true")
            await no_sideways_scroll(page, width, f"schedule-edit-{device}")
            await page.goto(f"{process.url}/schedules/new")
            await no_sideways_scroll(page, width, f"schedule-new-{device}")
        finally:
            await context.close()
