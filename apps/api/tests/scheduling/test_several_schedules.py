"""Several schedules per organization: CRUD at /collection/schedules, the default one the
seed's /collection/schedule acts on, pause notes, bounds, a run budget and jitter."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.scheduling.schedules import ScheduleService
from app.scheduling.settings import jitter_offset
from tests.helpers.actors import Actor, Actors
from tests.helpers.scheduling import EPOCH, FakeClock, Org, cancel_all, enable, make_org

FEB_1 = datetime(2027, 2, 1, tzinfo=UTC)


async def create(
    client: httpx.AsyncClient, org: Org, status: int = 201, **body: Any
) -> dict[str, Any]:
    response = await client.post(
        "/collection/schedules",
        json={"name": "Monthly", "preset_id": org.preset_id, **body},
        headers=org.admin.headers,
    )
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


async def change(
    client: httpx.AsyncClient, actor: Actor, schedule_id: str, status: int = 200, **body: Any
) -> dict[str, Any]:
    response = await client.patch(
        f"/collection/schedules/{schedule_id}", json=body, headers=actor.headers
    )
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


async def fires_of(
    client: httpx.AsyncClient, actor: Actor, schedule_id: str
) -> list[dict[str, Any]]:
    response = await client.get(
        f"/collection/schedules/{schedule_id}/history", headers=actor.headers
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_an_organization_has_several_schedules_and_the_first_is_the_default(
    client: httpx.AsyncClient, org: Org, clock: FakeClock
) -> None:
    first = await create(client, org, cron_expression="0 6 * * 1", jitter_seconds=0)
    clock.set(EPOCH + timedelta(seconds=1))
    second = await create(client, org, name="Weekly", cron_expression="0 7 * * 2")
    assert (first["is_default"], second["is_default"]) == (True, False)
    assert second["jitter_seconds"] == 300  # the API's default, against a thundering herd
    listed = await client.get("/collection/schedules", headers=org.admin.headers)
    assert [s["id"] for s in listed.json()["items"]] == [second["id"], first["id"]]
    # the seed's endpoint shows (and changes) the default one
    seed = (await client.get("/collection/schedule", headers=org.admin.headers)).json()
    assert (seed["id"], seed["cron_expression"]) == (first["id"], "0 6 * * 1")
    made_default = await change(client, org.admin, second["id"], is_default=True)
    assert made_default["is_default"] is True
    seed = (await client.get("/collection/schedule", headers=org.admin.headers)).json()
    assert seed["id"] == second["id"]
    again = await client.get(f"/collection/schedules/{first['id']}", headers=org.admin.headers)
    assert again.json()["is_default"] is False


async def test_schedules_fire_independently_each_in_its_own_history(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, schedules: ScheduleService
) -> None:
    monthly = await create(client, org, jitter_seconds=0)
    hourly = await create(client, org, name="Hourly", cron_expression="0 * * * *", jitter_seconds=0)
    assert hourly["next_run_at"] == "2027-01-15T13:00:00Z"
    clock.set(EPOCH + timedelta(hours=1))
    (fired,) = await schedules.fire_due()
    assert (str(fired.schedule_id), fired.outcome.value) == (hourly["id"], "started")
    assert [f["schedule_id"] for f in await fires_of(client, org.admin, hourly["id"])] == [
        hourly["id"]
    ]
    assert await fires_of(client, org.admin, monthly["id"]) == []
    await cancel_all(client, org.admin)
    clock.set(FEB_1)
    outcomes = sorted((str(r.schedule_id), r.outcome.value) for r in await schedules.fire_due())
    # both due at midnight; one active run per organization: the second is skipped
    assert sorted(o for _, o in outcomes) == ["skipped", "started"]
    assert {s for s, _ in outcomes} == {monthly["id"], hourly["id"]}


async def test_the_jitter_offset_is_fixed_per_schedule_and_below_the_bound() -> None:
    ids = [uuid.UUID(int=i) for i in range(200)]
    offsets = [jitter_offset(i, 300) for i in ids]
    assert all(timedelta(0) <= o < timedelta(seconds=300) for o in offsets)
    assert offsets == [jitter_offset(i, 300) for i in ids]  # the same on every replica
    assert len(set(offsets)) > 150  # spread out, not one value
    assert jitter_offset(ids[0], 0) == timedelta(0)


async def test_a_jittered_fire_keeps_its_cron_time_and_fires_after_its_offset(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, schedules: ScheduleService
) -> None:
    schedule = await create(client, org, jitter_seconds=3600)
    offset = jitter_offset(uuid.UUID(schedule["id"]), 3600)
    assert offset > timedelta(0)
    fire_at = FEB_1 + offset
    assert datetime.fromisoformat(schedule["next_run_at"]) == fire_at
    clock.set(fire_at - timedelta(milliseconds=1))
    assert await schedules.fire_due() == []  # the cron time has passed, its offset not yet
    clock.set(fire_at)
    (result,) = await schedules.fire_due()
    assert (result.scheduled_for, result.fired_at, result.outcome.value) == (
        FEB_1,
        fire_at,
        "started",
    )
    after = (
        await client.get(f"/collection/schedules/{schedule['id']}", headers=org.admin.headers)
    ).json()
    assert datetime.fromisoformat(after["next_run_at"]) == datetime(2027, 3, 1, tzinfo=UTC) + offset
    assert datetime.fromisoformat(after["last_run_at"]) == FEB_1


async def test_pausing_records_why_who_and_when_and_enabling_skips_what_passed(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, schedules: ScheduleService
) -> None:
    schedule = await create(client, org, jitter_seconds=0)
    clock.set(EPOCH + timedelta(minutes=5))
    paused = await change(
        client, org.admin, schedule["id"], enabled=False, paused_note="Supplier audit"
    )
    assert paused["paused_note"] == "Supplier audit"
    assert paused["paused_by"] == str(org.admin.user_id)
    assert paused["paused_at"] == "2027-01-15T12:05:00Z"
    assert paused["next_run_at"] is None
    # a note belongs to a disabled schedule only
    refused = await change(client, org.admin, schedule["id"], 400, enabled=True, paused_note="x")
    assert refused["detail"].startswith("paused_note: only a disabled schedule")
    clock.set(FEB_1 + timedelta(days=3))  # Feb 1 passed while paused
    enabled = await change(client, org.admin, schedule["id"], enabled=True)
    assert (enabled["paused_note"], enabled["paused_by"], enabled["paused_at"]) == (None,) * 3
    assert enabled["next_run_at"] == "2027-03-01T00:00:00Z"
    assert await schedules.fire_due() == []


async def test_starts_at_and_ends_at_bound_the_fires(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, schedules: ScheduleService
) -> None:
    bounded = await create(
        client,
        org,
        cron_expression="0 0 * * *",
        jitter_seconds=0,
        starts_at="2027-01-20T00:00:00Z",
        ends_at="2027-01-21T00:00:00Z",
    )
    assert bounded["next_run_at"] == "2027-01-20T00:00:00Z"
    for day in (20, 21):
        clock.set(datetime(2027, 1, day, tzinfo=UTC))
        (result,) = await schedules.fire_due()
        assert result.outcome.value == "started"
        await cancel_all(client, org.admin)
    after = (
        await client.get(f"/collection/schedules/{bounded['id']}", headers=org.admin.headers)
    ).json()
    assert (after["enabled"], after["next_run_at"]) == (False, None)
    assert "no due time is left before its end" in after["paused_note"]
    clock.set(datetime(2027, 1, 25, tzinfo=UTC))
    assert await schedules.fire_due() == []
    backwards = await create(
        client, org, 400, starts_at="2027-02-01T00:00:00Z", ends_at="2027-01-01T00:00:00Z"
    )
    assert backwards["detail"] == "ends_at: must be later than starts_at"
    over = await create(client, org, 400, ends_at="2027-01-01T00:00:00Z")
    assert over["detail"] == "ends_at: the schedule has no due time left before ends_at"


async def test_remaining_runs_counts_down_and_disables_the_schedule_at_zero(
    client: httpx.AsyncClient, org: Org, clock: FakeClock, schedules: ScheduleService
) -> None:
    schedule = await create(
        client, org, cron_expression="0 0 * * *", jitter_seconds=0, remaining_runs=2
    )
    trigger = await client.post(
        f"/collection/schedules/{schedule['id']}/trigger", headers=org.admin.headers
    )
    assert trigger.status_code == 201, trigger.text  # run now does not count
    await cancel_all(client, org.admin)
    for day, left in ((16, 1), (17, 0)):
        clock.set(datetime(2027, 1, day, tzinfo=UTC))
        (result,) = await schedules.fire_due()
        assert result.outcome.value == "started"
        await cancel_all(client, org.admin)
        now = (
            await client.get(f"/collection/schedules/{schedule['id']}", headers=org.admin.headers)
        ).json()
        assert now["remaining_runs"] == left
    assert (now["enabled"], now["next_run_at"]) == (False, None)
    assert f"remaining_runs reached 0 with run {result.run_id}" in now["paused_note"]
    clock.set(datetime(2027, 1, 18, tzinfo=UTC))
    assert await schedules.fire_due() == []


async def test_a_seed_schedule_keeps_no_jitter_and_existing_behaviour(
    client: httpx.AsyncClient, org: Org, clock: FakeClock
) -> None:
    body = await enable(client, org)
    assert body["next_run_at"] == "2027-02-01T00:00:00Z"  # the cron time: no jitter
    (detail,) = (await client.get("/collection/schedules", headers=org.admin.headers)).json()[
        "items"
    ]
    assert (detail["name"], detail["is_default"], detail["jitter_seconds"]) == ("Default", True, 0)


async def test_deleting_the_default_makes_the_oldest_remaining_one_the_default(
    client: httpx.AsyncClient, org: Org, clock: FakeClock
) -> None:
    first = await create(client, org)
    clock.set(EPOCH + timedelta(seconds=1))
    second = await create(client, org, name="Second")
    clock.set(EPOCH + timedelta(seconds=2))
    await create(client, org, name="Third")
    gone = await client.delete(f"/collection/schedules/{first['id']}", headers=org.admin.headers)
    assert gone.status_code == 204
    seed = (await client.get("/collection/schedule", headers=org.admin.headers)).json()
    assert seed["id"] == second["id"]
    again = await client.get(f"/collection/schedules/{first['id']}", headers=org.admin.headers)
    assert again.status_code == 404


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("PATCH", "", {"enabled": False}),
        ("DELETE", "", None),
        ("GET", "/history", None),
        ("POST", "/trigger", None),
    ],
)
async def test_another_organization_s_schedule_is_not_found_and_members_are_refused(
    client: httpx.AsyncClient,
    actors: Actors,
    org: Org,
    clock: FakeClock,
    method: str,
    suffix: str,
    body: dict[str, Any] | None,
) -> None:
    schedule = await create(client, org)
    other = await make_org(client, actors, "Other")
    url = f"/collection/schedules/{schedule['id']}{suffix}"
    foreign = await client.request(method, url, json=body, headers=other.admin.headers)
    assert foreign.status_code == 404, foreign.text
    member = actors.user()
    added = await client.post(
        "/orgs/current/members",
        json={"email": member.email, "role": "member"},
        headers=org.admin.headers,
    )
    assert added.status_code == 201, added.text
    refused = await client.request(method, url, json=body, headers=member.headers)
    assert refused.status_code == 403, refused.text
    anonymous = await client.request(method, url, json=body)
    assert anonymous.status_code == 401
    still = await client.get(f"/collection/schedules/{schedule['id']}", headers=org.admin.headers)
    assert still.status_code == 200  # nothing changed by the refused requests
    assert still.json()["enabled"] is True


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"paused_note": "a\x00b", "enabled": False}, 422, "paused_note"),
        ({"name": "x" * 101}, 422, "name"),
        ({"remaining_runs": 10**12}, 422, "remaining_runs"),
        ({"jitter_seconds": 3601}, 422, "jitter_seconds"),
        ({"starts_at": "9999-12-31T00:00:00Z"}, 400, "no due time left"),
        ({"starts_at": "2027-02-01T00:00:00"}, 422, "starts_at"),  # no zone: refused
    ],
)
async def test_bad_input_is_refused_saying_which_field_and_changes_nothing(
    client: httpx.AsyncClient,
    org: Org,
    clock: FakeClock,
    body: dict[str, Any],
    status: int,
    says: str,
) -> None:
    schedule = await create(client, org)
    refused = await client.patch(
        f"/collection/schedules/{schedule['id']}", json=body, headers=org.admin.headers
    )
    assert refused.status_code == status, refused.text
    assert says in refused.text
    after = await client.get(f"/collection/schedules/{schedule['id']}", headers=org.admin.headers)
    assert after.json() == schedule
