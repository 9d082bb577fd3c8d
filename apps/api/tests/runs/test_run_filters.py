"""GET /collection/runs filtered by preset, trigger, status and creation time, with the
cursor continuing the filtered list; what it refuses (422, naming what is valid), and
another organization's preset."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.helpers.actors import Actor, Actors
from tests.helpers.scheduling import EPOCH, FakeClock
from tests.helpers.web import make_preset


async def _ids(client: httpx.AsyncClient, actor: Actor, **params: Any) -> list[str]:
    """Every run id the filtered list gives, page after page (2 a page)."""
    ids: list[str] = []
    cursor = None
    while True:
        query = {**params, "limit": 2, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/collection/runs", params=query, headers=actor.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        ids += [run["id"] for run in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return ids


async def _run(client: httpx.AsyncClient, actor: Actor, cancel: bool = True, **body: Any) -> str:
    response = await client.post(
        "/collection/runs", json=body or {"category_ids": ["1"]}, headers=actor.headers
    )
    assert response.status_code == 201, response.text
    run_id: str = response.json()["id"]
    if cancel:
        await client.post(f"/collection/runs/{run_id}/cancel", headers=actor.headers)
    return run_id


async def test_runs_filtered_by_preset_trigger_status_and_time(
    client: httpx.AsyncClient, admin: Actor, clock: FakeClock
) -> None:
    electronics = await make_preset(client, admin, "Electronics")
    toys = await make_preset(client, admin, "Toys")
    made: dict[str, str] = {}
    for day, (name, body) in enumerate(
        [
            ("electronics-1", {"preset_id": electronics}),
            ("toys-1", {"preset_id": toys}),
            ("list-1", {"category_ids": ["7"]}),
            ("electronics-2", {"preset_id": electronics}),
            ("electronics-3", {"preset_id": electronics}),
        ]
    ):
        clock.set(EPOCH + timedelta(days=day))
        made[name] = await _run(client, admin, **body)
    # a scheduled run of Electronics on day 5 (cancelled at once), then one waiting to start
    clock.set(EPOCH + timedelta(days=5))
    schedule = {"preset_id": electronics, "cron_expression": "@monthly", "enabled": True}
    changed = await client.patch("/collection/schedule", json=schedule, headers=admin.headers)
    assert changed.status_code == 200, changed.text
    fired = await client.post("/collection/schedule/trigger", headers=admin.headers)
    made["scheduled"] = fired.json()["run_id"]
    await client.post(f"/collection/runs/{made['scheduled']}/cancel", headers=admin.headers)
    clock.set(EPOCH + timedelta(days=6))
    made["pending"] = await _run(client, admin, cancel=False, category_ids=["8"])

    def named(*names: str) -> list[str]:
        return [made[name] for name in names]

    everything = await _ids(client, admin)
    assert everything == named(
        "pending",
        "scheduled",
        "electronics-3",
        "electronics-2",
        "list-1",
        "toys-1",
        "electronics-1",
    )
    assert await _ids(client, admin, preset_id=electronics) == named(
        "scheduled", "electronics-3", "electronics-2", "electronics-1"
    )
    assert await _ids(client, admin, trigger="schedule") == named("scheduled")
    assert await _ids(client, admin, trigger=["manual", "schedule"]) == everything
    assert await _ids(client, admin, status="cancelled", preset_id=electronics) == named(
        "scheduled", "electronics-3", "electronics-2", "electronics-1"
    )
    assert await _ids(client, admin, status=["running", "pending"]) == named("pending")
    assert await _ids(client, admin, status="pending", trigger="schedule") == []
    # `since` inclusive, `until` exclusive, with any UTC offset
    since = (EPOCH + timedelta(days=1)).isoformat()
    until = (EPOCH + timedelta(days=4)).astimezone().isoformat()
    assert await _ids(client, admin, since=since, until=until) == named(
        "electronics-2", "list-1", "toys-1"
    )
    assert await _ids(
        client, admin, since=since, until=until, trigger="manual", preset_id=toys
    ) == (named("toys-1"))


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"trigger": "cron"}, "'manual', 'schedule' or 'backfill'"),
        ({"status": "done"}, "'pending', 'running'"),
        ({"since": "2027-01-15T12:00:00"}, "timezone"),
        ({"until": "2027-01-15"}, "timezone"),
        ({"since": "2027-01-16T00:00:00Z", "until": "2027-01-15T00:00:00Z"}, "must be after"),
        ({"since": "2027-01-16T00:00:00Z", "until": "2027-01-16T01:00:00+01:00"}, "must be after"),
        ({"preset_id": "electronics"}, "UUID"),
        ({"since": "0001-01-01T00:00:00+01:00"}, "lies outside the calendar in UTC"),
        ({"until": "9999-12-31T23:59:59-01:00"}, "lies outside the calendar in UTC"),
    ],
)
async def test_filters_that_cannot_be_read_are_refused(
    client: httpx.AsyncClient, admin: Actor, params: dict[str, str], says: str
) -> None:
    response = await client.get("/collection/runs", params=params, headers=admin.headers)
    assert response.status_code == 422, response.text
    assert says in response.text


async def test_another_organizations_preset_filters_to_nothing(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    admin, stranger = await actors.admin(), await actors.admin("Other")
    theirs = await make_preset(client, stranger)
    await _run(client, stranger, preset_id=theirs)
    await _run(client, admin)
    assert await _ids(client, admin, preset_id=theirs) == []
    assert len(await _ids(client, stranger, preset_id=theirs)) == 1


async def test_a_cursor_continues_the_list_of_its_filter(
    client: httpx.AsyncClient, admin: Actor, clock: FakeClock
) -> None:
    ids = []
    for day in range(5):
        clock.set(EPOCH + timedelta(days=day))
        ids.append(await _run(client, admin, cancel=day != 4))
    first = await client.get(
        "/collection/runs", params={"status": "cancelled", "limit": 2}, headers=admin.headers
    )
    assert [run["id"] for run in first.json()["items"]] == [ids[3], ids[2]]
    rest = await client.get(
        "/collection/runs",
        params={"status": "cancelled", "limit": 2, "cursor": first.json()["next_cursor"]},
        headers=admin.headers,
    )
    assert [run["id"] for run in rest.json()["items"]] == [ids[1], ids[0]]
    assert rest.json()["next_cursor"] is None
