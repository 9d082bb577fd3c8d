"""Schedules: the settings (defaults, validation, partial updates, the preset they use) and
row-level security.

Time is injected: a FakeClock replaces the services' clocks, so no test waits for a due
time to come around.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from app.core.database import SYSTEM, Database, DbActor, acting_as
from app.scheduling.schedules import ScheduleService
from app.tables import CollectionSchedule
from tests.helpers.actors import Actor, Actors
from tests.helpers.scheduling import (
    FakeClock,
    Org,
    enable,
    make_org,
    patch,
    runs_of,
)

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
