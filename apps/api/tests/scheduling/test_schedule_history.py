"""A schedule's history, filtered: by outcome (repeatable), by due time (`since` inclusive,
`until` exclusive), backfills or not, with cursor pagination; each entry links its run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.scheduling.schedules import ScheduleService
from tests.helpers.scheduling import FakeClock, Org, cancel_all

HOUR = timedelta(hours=1)
DAY_START = datetime(2027, 1, 15, tzinfo=UTC)  # the clock starts at 12:00 that day


def at(hour: float) -> datetime:
    return DAY_START + hour * HOUR


@pytest.fixture
async def schedule(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, schedules: ScheduleService
) -> dict[str, Any]:
    """An hourly schedule (the organization's default) with a history: 13:00 started, 14:00
    and 15:00 skipped (a run by hand was active), and backfills of 10:00 and 11:00."""
    response = await client.post(
        "/collection/schedules",
        json={
            "name": "Hourly",
            "preset_id": org.preset_id,
            "cron_expression": "0 * * * *",
            "jitter_seconds": 0,
        },
        headers=org.admin.headers,
    )
    assert response.status_code == 201, response.text
    clock.set(at(13))
    await schedules.fire_due()
    await cancel_all(client, org.admin)
    manual = await client.post(
        "/collection/runs", json={"preset_id": org.preset_id}, headers=org.admin.headers
    )
    for hour in (14, 15):
        clock.set(at(hour))
        await schedules.fire_due()
    await client.post(f"/collection/runs/{manual.json()['id']}/cancel", headers=org.admin.headers)
    clock.set(at(15.5))
    backfill = await client.post(
        f"/collection/schedules/{response.json()['id']}/backfill",
        json={"start": at(10).isoformat(), "end": at(11).isoformat()},
        headers=org.admin.headers,
    )
    assert backfill.status_code == 202, backfill.text
    body: dict[str, Any] = response.json()
    return body


async def history(
    client: httpx.AsyncClient, org: Org, schedule_id: str | None, status: int = 200, **params: Any
) -> dict[str, Any]:
    path = (
        f"/collection/schedules/{schedule_id}/history"
        if schedule_id
        else "/collection/schedule/history"
    )
    response = await client.get(path, params=params, headers=org.admin.headers)
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def due(body: dict[str, Any]) -> list[tuple[int, str, bool]]:
    """(hour, outcome, backfill) of each entry, in due-time order."""
    return sorted(
        (datetime.fromisoformat(f["scheduled_for"]).hour, f["outcome"], f["backfill"])
        for f in body["items"]
    )


async def test_outcome_filters_one_or_several_outcomes(
    client: httpx.AsyncClient, org: Org, schedule: dict[str, Any]
) -> None:
    everything = await history(client, org, schedule["id"])
    assert due(everything) == [
        (10, "queued", True),
        (11, "queued", True),
        (13, "started", False),
        (14, "skipped", False),
        (15, "skipped", False),
    ]
    skipped = await history(client, org, schedule["id"], outcome="skipped")
    assert [hour for hour, _, _ in due(skipped)] == [14, 15]
    several = await history(client, org, schedule["id"], outcome=["started", "skipped"])
    assert [hour for hour, _, _ in due(several)] == [13, 14, 15]
    missed = await history(client, org, schedule["id"], outcome="missed")
    assert missed == {"items": [], "next_cursor": None}
    wrong = await history(client, org, schedule["id"], status=422, outcome="skiped")
    assert "'started', 'skipped', 'missed', 'no_preset', 'failed', 'queued' or 'replaced'" in str(
        wrong
    )


async def test_since_is_inclusive_until_exclusive_and_both_need_an_offset(
    client: httpx.AsyncClient, org: Org, schedule: dict[str, Any]
) -> None:
    window = await history(
        client, org, schedule["id"], since=at(11).isoformat(), until=at(14).isoformat()
    )
    assert [hour for hour, _, _ in due(window)] == [11, 13]
    since = await history(client, org, schedule["id"], since=at(14).isoformat())
    assert [hour for hour, _, _ in due(since)] == [14, 15]
    naive = await history(client, org, schedule["id"], 422, since="2027-01-15T14:00:00")
    assert "timezone" in str(naive)
    backwards = await history(
        client, org, schedule["id"], 422, since=at(14).isoformat(), until=at(14).isoformat()
    )
    assert backwards["detail"][0]["msg"] == (
        "until (2027-01-15T14:00:00+00:00) must be after since (2027-01-15T14:00:00+00:00)"
    )


async def test_backfill_filter_and_each_entry_links_its_run(
    client: httpx.AsyncClient, org: Org, schedule: dict[str, Any]
) -> None:
    backfills = await history(client, org, schedule["id"], backfill="true")
    assert [hour for hour, _, _ in due(backfills)] == [10, 11]
    own = await history(client, org, schedule["id"], backfill="false", outcome="started")
    (started,) = own["items"]
    assert started["run_url"] == f"/collection/runs/{started['run_id']}"
    run = await client.get(started["run_url"], headers=org.admin.headers)
    assert run.json()["id"] == started["run_id"]
    for entry in (await history(client, org, schedule["id"]))["items"]:
        assert entry["run_url"] == (
            f"/collection/runs/{entry['run_id']}" if entry["run_id"] else None
        )
    await cancel_all(client, org.admin)


async def test_filters_combine_with_pagination_and_the_seed_s_history(
    client: httpx.AsyncClient, org: Org, schedule: dict[str, Any]
) -> None:
    filters = {"outcome": ["skipped", "queued"], "since": at(11).isoformat(), "limit": 1}
    pages, cursor = [], None
    while True:
        body = await history(
            client, org, schedule["id"], **filters, **({"cursor": cursor} if cursor else {})
        )
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert [len(page) for page in pages] == [1, 1, 1]
    hours = sorted(datetime.fromisoformat(p[0]["scheduled_for"]).hour for p in pages)
    assert hours == [11, 14, 15]
    # the seed's /collection/schedule/history (the default schedule) takes the same filters
    seed = await history(client, org, None, outcome="skipped", backfill="false")
    assert [hour for hour, _, _ in due(seed)] == [14, 15]
    await cancel_all(client, org.admin)


EDGES = ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00")  # outside UTC's calendar


@pytest.mark.parametrize("moment", EDGES)
async def test_a_moment_utc_cannot_express_is_a_422_everywhere_never_a_500(
    client: httpx.AsyncClient, org: Org, schedule: dict[str, Any], moment: str
) -> None:
    headers = org.admin.headers
    answers = [
        await client.get(
            f"/collection/schedules/{schedule['id']}/history",
            params={"since": moment},
            headers=headers,
        ),
        await client.get("/collection/schedule/history", params={"until": moment}, headers=headers),
        await client.get("/collection/runs", params={"since": moment}, headers=headers),
        await client.post(
            f"/collection/schedules/{schedule['id']}/backfill",
            json={"start": moment, "end": "2027-01-15T10:00:00Z"},
            headers=headers,
        ),
        await client.patch(
            f"/collection/schedules/{schedule['id']}", json={"ends_at": moment}, headers=headers
        ),
    ]
    for answer in answers:
        assert answer.status_code == 422, answer.text
        assert "outside the calendar in UTC" in answer.text, answer.text
    unchanged = await client.get(f"/collection/schedules/{schedule['id']}", headers=headers)
    assert unchanged.json()["ends_at"] is None
