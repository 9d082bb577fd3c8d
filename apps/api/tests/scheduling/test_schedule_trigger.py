"""Schedules run by hand and looked at: the trigger, the history of fires, and the preview
of the next fire times.

Time is injected: a FakeClock replaces the services' clocks, so no test waits for a due
time to come around.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import httpx
import pytest

from app.scheduling.engine import CollectionScheduler
from app.scheduling.schedules import ScheduleService
from tests.helpers.actors import Actors
from tests.helpers.scheduling import (
    EPOCH,
    FakeClock,
    Org,
    enable,
    history,
    patch,
)

# --- trigger, history, preview ----------------------------------------------------------------


async def test_trigger_runs_now_then_skips_while_active(
    client: httpx.AsyncClient, org: Org, clock: FakeClock
) -> None:
    await enable(client, org)
    first = await client.post("/collection/schedule/trigger", headers=org.admin.headers)
    assert first.status_code == 201, first.text
    assert first.json()["outcome"] == "started"
    assert first.json()["manual"] is True
    run_id = first.json()["run_id"]
    await client.post(f"/collection/runs/{run_id}/pause", headers=org.admin.headers)
    clock.set(EPOCH + timedelta(seconds=5))
    second = await client.post("/collection/schedule/trigger", headers=org.admin.headers)
    assert second.status_code == 409
    assert run_id in second.json()["detail"]
    entries = await history(client, org.admin)
    assert [e["outcome"] for e in entries] == ["skipped", "started"]
    body = (await client.get("/collection/schedule", headers=org.admin.headers)).json()
    assert body["next_run_at"] == "2027-02-01T00:00:00Z"  # a trigger leaves the cron alone


def _metric(text: str, line_start: str) -> float:
    lines = [line for line in text.splitlines() if line.startswith(line_start)]
    return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0


async def test_a_run_by_hand_is_counted_apart_and_mails_nobody(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    await enable(client, org, notify_email=True)
    manual = 'schedule_fires_total{outcome="started",policy="skip",trigger="manual"}'
    skipped = 'schedule_fires_total{outcome="skipped",policy="skip",trigger="manual"}'
    delays = "schedule_fire_delay_seconds_count"
    before = (await client.get("/metrics")).text
    caplog.set_level(logging.INFO)
    started = await client.post("/collection/schedule/trigger", headers=org.admin.headers)
    same_instant = await client.post("/collection/schedule/trigger", headers=org.admin.headers)
    assert (started.status_code, same_instant.status_code) == (201, 409)
    assert "triggered at this very moment" in same_instant.json()["detail"]
    clock.set(EPOCH + timedelta(seconds=1))
    refused = await client.post("/collection/schedule/trigger", headers=org.admin.headers)
    assert refused.status_code == 409  # a run is active: skipped, and logged
    await app_scheduler(client).drain()
    after = (await client.get("/metrics")).text
    assert _metric(after, manual) == _metric(before, manual) + 1
    assert _metric(after, skipped) == _metric(before, skipped) + 1
    assert _metric(after, delays) == _metric(before, delays)  # no due time, so no delay
    assert "run by hand: started run" in caplog.text
    assert "Scheduled collection run skipped" not in caplog.text  # no notice mailed


def app_scheduler(client: httpx.AsyncClient) -> CollectionScheduler:
    scheduler: CollectionScheduler = client._transport.app.state.instance.scheduler  # type: ignore[attr-defined]
    return scheduler


async def test_trigger_without_schedule_or_preset(
    client: httpx.AsyncClient, org: Org, clock: FakeClock
) -> None:
    missing = await client.post("/collection/schedule/trigger", headers=org.admin.headers)
    assert missing.status_code == 404
    await patch(client, org.admin, notify_email=True)
    no_preset = await client.post("/collection/schedule/trigger", headers=org.admin.headers)
    assert no_preset.status_code == 400
    assert "preset" in no_preset.json()["detail"]
    assert [e["outcome"] for e in await history(client, org.admin)] == ["no_preset"]


async def test_history_is_paginated_newest_first(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, schedules: ScheduleService
) -> None:
    await enable(client, org, "0 * * * *")
    for hour in range(1, 6):
        clock.set(EPOCH + timedelta(hours=hour, seconds=1))
        await schedules.fire_due()
    page = (
        await client.get(
            "/collection/schedule/history", params={"limit": 2}, headers=org.admin.headers
        )
    ).json()
    assert [e["scheduled_for"] for e in page["items"]] == [
        "2027-01-15T17:00:00Z",
        "2027-01-15T16:00:00Z",
    ]
    assert page["next_cursor"]
    assert [e["outcome"] for e in page["items"]] == ["skipped", "skipped"]


async def test_preview_follows_dst(client: httpx.AsyncClient, actors: Actors, org: Org) -> None:
    viewer = await actors.member(org.admin, "viewer")
    response = await client.get(
        "/collection/schedule/preview",
        params={
            "cron_expression": "30 2 * * *",
            "timezone": "America/New_York",
            "after": "2027-03-13T12:00:00Z",
            "count": 3,
        },
        headers=viewer.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["fire_times"] == [
        "2027-03-14T03:00:00-04:00",
        "2027-03-15T02:30:00-04:00",
        "2027-03-16T02:30:00-04:00",
    ]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"cron_expression": "0 0 * * 8"}, "cron_expression: day-of-week must be 0-7"),
        ({"cron_expression": "0 0 * * *", "timezone": "Nowhere"}, "timezone: unknown time zone"),
        (
            {"cron_expression": "* * * * *", "after": "0001-01-01T00:00:00+14:00"},
            "after 0001-01-01T00:00:00+14:00 lies outside the calendar in UTC",
        ),
        (
            {
                "cron_expression": "* * * * *",
                "after": "0001-01-01T00:00:00",
                "timezone": "Etc/GMT-14",
            },
            "after 0001-01-01T00:00:00+14:00 lies outside",
        ),
    ],
)
async def test_preview_rejects_bad_input(
    client: httpx.AsyncClient, org: Org, params: dict[str, str], message: str
) -> None:
    response = await client.get(
        "/collection/schedule/preview", params=params, headers=org.admin.headers
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith(message)


async def test_preview_ends_with_the_calendar(client: httpx.AsyncClient, org: Org) -> None:
    response = await client.get(
        "/collection/schedule/preview",
        params={"cron_expression": "* * * * *", "after": "9999-12-31T23:57:00Z"},
        headers=org.admin.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["fire_times"] == ["9999-12-31T23:58:00Z", "9999-12-31T23:59:00Z"]
