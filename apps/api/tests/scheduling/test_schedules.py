"""Schedules: settings validation, firing exactly once with the skip rule, the grace window
after downtime, triggers, history, preview, notifications and row-level security.

Time is injected: a FakeClock replaces the services' clocks, so no test waits for a due
time to come around.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app.core.config import Settings
from app.core.database import SYSTEM, Database, DbActor, acting_as
from app.runs.lifecycle import RunLifecycle
from app.scheduling.engine import CollectionScheduler
from app.scheduling.schedules import FireResult, ScheduleService, purge_expired_fires
from app.tables import CollectionSchedule, ScheduleFire
from tests.helpers.actors import Actor, Actors
from tests.helpers.scheduling import (
    EPOCH,
    FakeClock,
    Org,
    cancel_all,
    enable,
    history,
    make_engine,
    make_org,
    patch,
    runs_of,
)
from tests.helpers.settings import make_settings

# --- settings ------------------------------------------------------------------------------


async def test_defaults_before_anything_is_saved(client: httpx.AsyncClient, org: Org) -> None:
    response = await client.get("/collection/schedule", headers=org.admin.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] is None
    assert body["cron_expression"] == "0 0 1 * *"
    assert body["timezone"] == "UTC"
    assert body["enabled"] is False
    assert body["next_run_at"] is None
    assert body["last_run_at"] is None
    assert body["description"]


async def test_enable_computes_next_run_in_the_time_zone(
    client: httpx.AsyncClient, org: Org, clock: FakeClock
) -> None:
    body = await enable(client, org, "0 0 1 * *", "America/New_York")
    assert body["enabled"] is True
    assert body["preset_name"] == "Electronics"
    # midnight of Feb 1 in New York is 05:00 UTC
    assert body["next_run_at"] == "2027-02-01T05:00:00Z"
    saved = (await client.get("/collection/schedule", headers=org.admin.headers)).json()
    assert saved == body


async def test_partial_update_keeps_other_fields(
    client: httpx.AsyncClient, org: Org, clock: FakeClock
) -> None:
    await enable(client, org, "0 9 * * 1-5", "Europe/Berlin", notify_email=True)
    changed = (await patch(client, org.admin, enabled=False)).json()
    assert changed["cron_expression"] == "0 9 * * 1-5"
    assert changed["timezone"] == "Europe/Berlin"
    assert changed["notify_email"] is True
    assert changed["next_run_at"] is None
    again = (await patch(client, org.admin, enabled=True)).json()
    assert again["next_run_at"] == "2027-01-18T08:00:00Z"  # Monday 09:00 in Berlin


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"cron_expression": "0 0 * * 8"}, "cron_expression: day-of-week must be 0-7"),
        ({"cron_expression": "0 0 30 2 *"}, "cron_expression: this expression can never fire"),
        ({"cron_expression": "@reboot"}, "cron_expression: '@reboot' is not supported"),
        ({"cron_expression": "*/15 * * * * *"}, "cron_expression: expected 5 fields"),
        ({"timezone": "Mars/Olympus"}, "timezone: unknown time zone 'Mars/Olympus'"),
        ({"preset_id": str(uuid.uuid4())}, "preset_id: preset"),
        ({"enabled": True, "preset_id": None}, "preset_id: an enabled schedule needs a preset"),
    ],
)
async def test_invalid_change_is_400_and_changes_nothing(
    client: httpx.AsyncClient, org: Org, body: dict[str, Any], message: str
) -> None:
    before = (await patch(client, org.admin, cron_expression="0 6 * * *")).json()
    response = await patch(client, org.admin, **body)
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith(message), response.json()
    after = (await client.get("/collection/schedule", headers=org.admin.headers)).json()
    assert after == before


@pytest.mark.parametrize(
    "body", [{"cron_expression": None}, {"enabled": "sometimes"}, {"colour": "red"}]
)
async def test_malformed_change_is_422(
    client: httpx.AsyncClient, org: Org, body: dict[str, Any]
) -> None:
    response = await patch(client, org.admin, **body)
    assert response.status_code == 422


@pytest.mark.parametrize(
    "raw", [b'{"timezone": "\\ud800"}', b'{"cron_expression": "0 0 * * \\udfff"}']
)
async def test_input_that_is_not_unicode_is_422_not_500(
    client: httpx.AsyncClient, org: Org, raw: bytes
) -> None:
    response = await client.patch(
        "/collection/schedule",
        content=raw,
        headers={**org.admin.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert "lone surrogate" in response.json()["detail"][0]["msg"]


async def test_preset_of_another_org_is_refused(
    client: httpx.AsyncClient, actors: Actors, org: Org
) -> None:
    other = await make_org(client, actors, "Other")
    response = await patch(client, org.admin, preset_id=other.preset_id, enabled=True)
    assert response.status_code == 400
    assert "not found in this organization" in response.json()["detail"]


async def test_deleting_the_preset_detaches_it(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, schedules: ScheduleService
) -> None:
    await enable(client, org)
    deleted = await client.delete(f"/collection/presets/{org.preset_id}", headers=org.admin.headers)
    assert deleted.status_code == 204
    body = (await client.get("/collection/schedule", headers=org.admin.headers)).json()
    assert body["preset_id"] is None
    assert body["enabled"] is True
    clock.set(datetime(2027, 2, 1, tzinfo=UTC))
    (result,) = await schedules.fire_due()
    assert result.outcome.value == "no_preset"
    assert result.run_id is None
    assert await runs_of(client, org.admin) == []


# --- firing ---------------------------------------------------------------------------------


async def test_fires_once_at_the_due_time_and_advances(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, schedules: ScheduleService
) -> None:
    await enable(client, org)
    clock.set(datetime(2027, 1, 31, 23, 59, 59, tzinfo=UTC))
    assert await schedules.fire_due() == []  # not yet

    clock.set(datetime(2027, 2, 1, 0, 0, 0, 250_000, tzinfo=UTC))
    (result,) = await schedules.fire_due()
    assert result.outcome.value == "started"
    assert result.scheduled_for == datetime(2027, 2, 1, tzinfo=UTC)
    assert await schedules.fire_due() == []  # never twice

    (run,) = await runs_of(client, org.admin)
    assert run["id"] == str(result.run_id)
    assert run["trigger"] == "schedule"
    assert run["created_by"] is None
    assert run["status"] in ("running", "completed")
    assert run["schedule_id"] is not None
    assert run["category_ids"] == ["172282"]

    body = (await client.get("/collection/schedule", headers=org.admin.headers)).json()
    assert body["last_run_at"] == "2027-02-01T00:00:00Z"
    assert body["last_outcome"] == "started"
    assert body["next_run_at"] == "2027-03-01T00:00:00Z"

    (entry,) = await history(client, org.admin)
    assert entry["scheduled_for"] == "2027-02-01T00:00:00Z"
    assert entry["outcome"] == "started"
    assert entry["run_id"] == run["id"]
    assert entry["manual"] is False


async def test_fire_while_a_run_is_active_is_skipped_and_logged(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, schedules: ScheduleService
) -> None:
    await enable(client, org)
    manual = await client.post(
        "/collection/runs", json={"category_ids": ["1"]}, headers=org.admin.headers
    )
    clock.set(datetime(2027, 2, 1, 0, 0, 1, tzinfo=UTC))
    (result,) = await schedules.fire_due()
    assert result.outcome.value == "skipped"
    assert str(result.run_id) == manual.json()["id"]
    assert [r["id"] for r in await runs_of(client, org.admin)] == [manual.json()["id"]]
    (entry,) = await history(client, org.admin)
    assert entry["outcome"] == "skipped"
    assert entry["run_id"] == manual.json()["id"]
    assert "pending" in entry["detail"]
    body = (await client.get("/collection/schedule", headers=org.admin.headers)).json()
    assert body["next_run_at"] == "2027-03-01T00:00:00Z"


async def test_manual_run_racing_a_fire_never_both_start(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, schedules: ScheduleService
) -> None:
    await enable(client, org, "0 * * * *")
    for hour in range(1, 7):
        await cancel_all(client, org.admin)
        clock.set(EPOCH + timedelta(hours=hour, seconds=1))
        manual, fired = await asyncio.gather(
            client.post(
                "/collection/runs", json={"category_ids": ["1"]}, headers=org.admin.headers
            ),
            schedules.fire_due(),
        )
        (result,) = fired
        started = [manual.status_code == 201, result.outcome.value == "started"]
        assert started.count(True) == 1, (manual.status_code, result)
        active = [
            r for r in await runs_of(client, org.admin) if r["status"] in ("pending", "running")
        ]
        assert len(active) <= 1


async def test_two_replicas_fire_each_due_time_exactly_once(
    client: httpx.AsyncClient,
    actors: Actors,
    clock: FakeClock,
    app: FastAPI,
    settings: Settings,
    database: Database,
) -> None:
    orgs = [await make_org(client, actors, f"Org {i}") for i in range(12)]
    for item in orgs:
        await enable(client, item, "*/5 * * * *")
    collection: RunLifecycle = app.state.instance.runs
    replicas = [
        ScheduleService(
            database,
            make_settings(**{**settings.model_dump(), "instance_id": f"replica-{i}"}),
            collection,
            clock=clock,
        )
        for i in range(3)
    ]
    for step in range(1, 4):
        for item in orgs:
            await cancel_all(client, item.admin)
        clock.set(EPOCH + timedelta(minutes=5 * step, seconds=2))
        outcomes = await asyncio.gather(*(replica.fire_due() for replica in replicas))
        fired = [result for results in outcomes for result in results]
        assert len(fired) == len(orgs)
        assert {r.outcome.value for r in fired} == {"started"}
    async with database.read() as session:
        rows = (
            await session.execute(
                sa.select(
                    ScheduleFire.schedule_id, ScheduleFire.scheduled_for, ScheduleFire.instance_id
                )
            )
        ).all()
    assert len(rows) == len(orgs) * 3
    assert len({(s, t) for s, t, _ in rows}) == len(rows)  # no duplicates
    scheduled_runs = 0
    for item in orgs:
        scheduled_runs += len(
            [r for r in await runs_of(client, item.admin) if r["trigger"] == "schedule"]
        )
    assert scheduled_runs == len(orgs) * 3


async def test_many_due_schedules_fire_in_batches(
    client: httpx.AsyncClient,
    actors: Actors,
    clock: FakeClock,
    schedules: ScheduleService,
    database: Database,
) -> None:
    orgs = [await make_org(client, actors, f"Org {i}") for i in range(7)]
    for item in orgs:
        await enable(client, item)
    saved, schedules.batch_size = schedules.batch_size, 3
    try:
        clock.set(datetime(2027, 2, 1, 0, 0, 1, tzinfo=UTC))
        results = await schedules.fire_due()
    finally:
        schedules.batch_size = saved
    assert len(results) == 7
    assert len({r.schedule_id for r in results}) == 7


async def test_a_failing_batch_keeps_the_follow_up_of_the_batches_before_it(
    client: httpx.AsyncClient,
    actors: Actors,
    clock: FakeClock,
    schedules: ScheduleService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for item in [await make_org(client, actors, f"Org {i}") for i in range(3)]:
        await enable(client, item)
    monkeypatch.setattr(schedules, "batch_size", 2)
    real_batch, calls = schedules._fire_batch, []

    async def second_batch_fails() -> tuple[int, list[FireResult]]:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the database went away")
        return await real_batch()

    monkeypatch.setattr(schedules, "_fire_batch", second_batch_fails)
    clock.set(datetime(2027, 2, 1, 0, 0, 1, tzinfo=UTC))
    handled: list[list[FireResult]] = []
    with pytest.raises(RuntimeError):
        await schedules.fire_due(on_batch=handled.append)
    assert [len(batch) for batch in handled] == [2]  # committed, so followed up at once
    (last,) = await schedules.fire_due()  # the next tick fires the rest
    assert last.schedule_id not in {result.schedule_id for result in handled[0]}


async def test_disabled_schedule_does_not_fire_and_reenabling_does_not_backfill(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, schedules: ScheduleService
) -> None:
    await enable(client, org)
    await patch(client, org.admin, enabled=False)
    clock.set(datetime(2027, 2, 1, 0, 0, 1, tzinfo=UTC))
    assert await schedules.fire_due() == []
    body = (await patch(client, org.admin, enabled=True)).json()
    assert body["next_run_at"] == "2027-03-01T00:00:00Z"
    assert await schedules.fire_due() == []


async def test_a_change_that_keeps_the_times_keeps_an_unclaimed_due_time(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, schedules: ScheduleService
) -> None:
    await enable(client, org)
    clock.set(datetime(2027, 2, 1, 0, 10, tzinfo=UTC))  # due at 00:00; no tick has run yet
    for change in ({"notify_email": True}, {}, {"cron_expression": "@monthly"}):
        body = (await patch(client, org.admin, **change)).json()
        assert body["next_run_at"] == "2027-02-01T00:00:00Z", change
    (result,) = await schedules.fire_due()
    assert (result.outcome.value, result.scheduled_for) == (
        "started",
        datetime(2027, 2, 1, tzinfo=UTC),
    )
    await cancel_all(client, org.admin)
    # a change of times starts from now: the next due time of the new expression
    body = (await patch(client, org.admin, cron_expression="30 0 * * *")).json()
    assert body["next_run_at"] == "2027-02-01T00:30:00Z"


async def test_a_tick_a_moment_late_is_no_misfire_even_without_grace(
    settings: Settings, app: FastAPI, client: httpx.AsyncClient, org: Org, clock: FakeClock
) -> None:
    service = ScheduleService(
        app.state.instance.database,
        make_settings(**{**settings.model_dump(), "schedule_misfire_grace_seconds": 0}),
        app.state.instance.runs,
    )
    service.clock = clock
    await enable(client, org)
    clock.set(datetime(2027, 2, 1, 0, 0, 0, 3000, tzinfo=UTC))  # the tick ran 3 ms late
    (result,) = await service.fire_due()
    assert result.outcome.value == "started"


# --- downtime: the grace window ------------------------------------------------------------


async def test_due_time_within_grace_fires_late_once(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, schedules: ScheduleService
) -> None:
    await enable(client, org)
    clock.set(datetime(2027, 2, 1, 0, 40, tzinfo=UTC))  # down for 40 min; grace is 60
    (result,) = await schedules.fire_due()
    assert result.outcome.value == "started"
    assert result.scheduled_for == datetime(2027, 2, 1, tzinfo=UTC)
    assert await schedules.fire_due() == []


async def test_due_time_older_than_grace_is_logged_missed(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, schedules: ScheduleService
) -> None:
    await enable(client, org)
    clock.set(datetime(2027, 2, 1, 3, 0, tzinfo=UTC))  # down for 3 hours
    (result,) = await schedules.fire_due()
    assert result.outcome.value == "missed"
    assert "SCHEDULE_MISFIRE_GRACE_SECONDS=3600" in (result.detail or "")
    assert await runs_of(client, org.admin) == []
    body = (await client.get("/collection/schedule", headers=org.admin.headers)).json()
    assert body["next_run_at"] == "2027-03-01T00:00:00Z"
    assert body["last_outcome"] == "missed"


async def test_several_missed_due_times_coalesce_into_one_fire(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, schedules: ScheduleService
) -> None:
    await enable(client, org, "0 * * * *")  # hourly; next due 13:00
    clock.set(datetime(2027, 1, 15, 16, 30, tzinfo=UTC))  # 13:00, 14:00, 15:00, 16:00 passed
    (result,) = await schedules.fire_due()
    assert result.outcome.value == "started"
    assert result.scheduled_for == datetime(2027, 1, 15, 16, 0, tzinfo=UTC)
    assert "coalesced 3 earlier missed due time(s)" in (result.detail or "")
    assert len(await runs_of(client, org.admin)) == 1
    body = (await client.get("/collection/schedule", headers=org.admin.headers)).json()
    assert body["next_run_at"] == "2027-01-15T17:00:00Z"


async def test_history_older_than_the_retention_is_purged_in_batches(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, schedules: ScheduleService
) -> None:
    await enable(client, org, "0 * * * *")  # hourly
    for hour in (13, 14, 15, 16, 17):  # a fire an hour; each run cancelled before the next
        clock.set(datetime(2027, 1, 15, hour, 0, 1, tzinfo=UTC))
        assert [r.outcome.value for r in await schedules.fire_due()] == ["started"]
        await cancel_all(client, org.admin)
    deleted = await purge_expired_fires(
        schedules.database,
        now=datetime(2027, 1, 15, 17, 30, tzinfo=UTC),
        retention=timedelta(hours=2),
        batch_size=2,
    )
    assert deleted == 3  # fired at 13:00, 14:00 and 15:00, in two batches
    entries = await history(client, org.admin)
    assert [e["scheduled_for"] for e in entries] == ["2027-01-15T17:00:00Z", "2027-01-15T16:00:00Z"]
    clock.set(datetime(2027, 1, 15, 18, 0, 1, tzinfo=UTC))  # and firing goes on as before
    assert [r.outcome.value for r in await schedules.fire_due()] == ["started"]


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
    manual = 'schedule_fires_total{outcome="started",trigger="manual"}'
    skipped = 'schedule_fires_total{outcome="skipped",trigger="manual"}'
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


# --- the APScheduler engine -----------------------------------------------------------------


class RealTimeClock(FakeClock):
    """A fake clock that stands at a chosen start while the test sets things up, then,
    from `run()` on, moves with real time (so a slow machine's set-up cannot carry it past
    a due time before the engine runs)."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self._offset: timedelta | None = None

    def run(self) -> None:
        self._offset = self.now - datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now if self._offset is None else datetime.now(UTC) + self._offset


async def test_engine_fires_a_lone_schedule_within_a_second(
    client: httpx.AsyncClient, org: Org, app: FastAPI, settings: Settings
) -> None:
    due = datetime(2027, 2, 1, tzinfo=UTC)
    live = RealTimeClock(due - timedelta(seconds=0.4))
    schedules: ScheduleService = app.state.instance.schedules
    collection: RunLifecycle = app.state.instance.runs
    saved = schedules.clock, collection.clock
    schedules.clock = collection.clock = live
    engine = make_engine(app, settings, live)
    try:
        await enable(client, org)
        live.run()
        engine.start()
        fires: list[dict[str, Any]] = []
        for _ in range(100):
            fires = await history(client, org.admin)
            if fires:
                break
            await asyncio.sleep(0.02)
    finally:
        await engine.shutdown()
        await engine.drain()
        schedules.clock, collection.clock = saved
    (fire,) = fires
    delay = datetime.fromisoformat(fire["fired_at"]) - due
    assert timedelta(0) <= delay < timedelta(seconds=1)


async def test_shutdown_lets_a_tick_in_flight_finish(
    app: FastAPI,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """APScheduler cancels the jobs still running when it shuts down (and logs each as a
    failure); stopping the engine waits for its tick instead."""
    schedules: ScheduleService = app.state.instance.schedules
    entered, release = asyncio.Event(), asyncio.Event()
    finished: list[bool] = []

    async def slow_fire_due(**_options: Any) -> list[FireResult]:
        entered.set()
        await release.wait()
        finished.append(True)
        return []

    monkeypatch.setattr(schedules, "fire_due", slow_fire_due)
    engine = make_engine(app, settings, FakeClock(datetime(2027, 2, 1, tzinfo=UTC)))
    engine.start()  # ticks at once: whatever is due after downtime
    await asyncio.wait_for(entered.wait(), timeout=5)
    stopping = asyncio.create_task(engine.shutdown())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # waiting for the tick, not cancelling it
    release.set()
    await asyncio.wait_for(stopping, timeout=5)
    await engine.drain()
    assert finished == [True]
    assert not engine.running
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_engine_picks_up_a_change_without_restart(
    client: httpx.AsyncClient, org: Org, app: FastAPI, settings: Settings
) -> None:
    live = RealTimeClock(datetime(2027, 2, 1, 11, 59, 59, 500_000, tzinfo=UTC))
    schedules: ScheduleService = app.state.instance.schedules
    collection: RunLifecycle = app.state.instance.runs
    saved = schedules.clock, collection.clock
    schedules.clock = collection.clock = live
    engine = make_engine(app, settings, live)
    commands = app.state.instance.schedule_commands
    commands.engine, original = engine, commands.engine
    try:
        engine.start()
        await asyncio.sleep(0.05)
        await enable(client, org, "0 12 * * *")  # due half a second after `run()`
        live.run()
        fires: list[dict[str, Any]] = []
        for _ in range(100):
            fires = await history(client, org.admin)
            if fires:
                break
            await asyncio.sleep(0.02)
    finally:
        await engine.shutdown()
        await engine.drain()
        commands.engine = original
        schedules.clock, collection.clock = saved
    assert [f["scheduled_for"] for f in fires] == ["2027-02-01T12:00:00Z"]


# --- row-level security (PostgreSQL) ----------------------------------------------------------


async def test_row_level_security_hides_other_orgs_schedules(
    client: httpx.AsyncClient, actors: Actors, database: Database, clock: FakeClock
) -> None:
    if database.dialect != "postgresql":
        pytest.skip("row-level security is a PostgreSQL feature; SQLite relies on the API")
    first = await make_org(client, actors, "First")
    second = await make_org(client, actors, "Second")
    await enable(client, first)
    await enable(client, second)
    member = await actors.member(first.admin, "member")

    async def visible(actor: DbActor | None) -> set[uuid.UUID]:
        with acting_as(actor):
            async with database.read() as session:
                # deliberately no org filter: the policy must do the filtering
                return set(await session.scalars(sa.select(CollectionSchedule.org_id)))

    def in_org(actor: Actor) -> DbActor:
        return DbActor(user_id=actor.user_id, org_id=actor.org_id)

    assert await visible(in_org(first.admin)) == {first.admin.org_id}
    assert await visible(in_org(second.admin)) == {second.admin.org_id}
    assert await visible(in_org(member)) == set()  # not an admin
    assert await visible(DbActor(user_id=first.admin.user_id)) == set()  # in no organization
    assert await visible(DbActor(user_id=uuid.uuid4(), org_id=first.admin.org_id)) == set()
    assert await visible(SYSTEM) == {first.admin.org_id, second.admin.org_id}
    with acting_as(in_org(second.admin)):
        async with database.transaction() as session:
            result = await session.execute(
                sa.update(CollectionSchedule).values(enabled=False)  # no filter either
            )
    assert result.rowcount == 1  # type: ignore[attr-defined]
    body = (await client.get("/collection/schedule", headers=first.admin.headers)).json()
    assert body["enabled"] is True
