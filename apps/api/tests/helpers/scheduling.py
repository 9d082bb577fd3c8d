"""Shared pieces of the schedule tests: an injected clock, an org with a preset, small API
helpers, and a schedule engine of the app's services. The fixtures that use them (`clock`,
`schedules`, `org`) are in tests/conftest.py."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI

from app.core.config import Settings
from app.runs.executor import RunExecutor
from app.runs.notifications import Mailer
from app.scheduling.engine import CollectionScheduler
from app.scheduling.schedules import ScheduleService
from tests.helpers.actors import Actor, Actors

EPOCH = datetime(2027, 1, 15, 12, 0, tzinfo=UTC)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, moment: datetime) -> None:
        self.now = moment


@dataclass
class Org:
    admin: Actor
    preset_id: str


async def make_org(
    client: httpx.AsyncClient, actors: Actors, name: str = "Acme", category_id: str = "172282"
) -> Org:
    """An organization, its admin and one preset ("Electronics") of `category_id`."""
    admin = await actors.admin(name)
    preset = await client.post(
        "/collection/presets",
        json={"name": "Electronics", "category_ids": [category_id]},
        headers=admin.headers,
    )
    assert preset.status_code == 201, preset.text
    return Org(admin, preset.json()["id"])


async def patch(client: httpx.AsyncClient, actor: Actor, **body: Any) -> httpx.Response:
    return await client.patch("/collection/schedule", json=body, headers=actor.headers)


async def enable(
    client: httpx.AsyncClient, org: Org, cron: str = "0 0 1 * *", tz: str = "UTC", **extra: Any
) -> dict[str, Any]:
    response = await patch(
        client,
        org.admin,
        cron_expression=cron,
        timezone=tz,
        preset_id=org.preset_id,
        enabled=True,
        **extra,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def history(client: httpx.AsyncClient, actor: Actor) -> list[dict[str, Any]]:
    response = await client.get("/collection/schedule/history", headers=actor.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def runs_of(client: httpx.AsyncClient, actor: Actor) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (
        await client.get("/collection/runs", params={"limit": 200}, headers=actor.headers)
    ).json()["items"]
    return items


async def cancel_all(client: httpx.AsyncClient, actor: Actor) -> None:
    """Cancel the actor's active runs and wait until they are cancelled (a run being
    executed is `cancelling` until its provider calls in flight are saved)."""
    for run in await runs_of(client, actor):
        if run["status"] in ("pending", "queued", "running", "pausing", "paused"):
            await client.post(f"/collection/runs/{run['id']}/cancel", headers=actor.headers)
    for _ in range(1000):
        if all(run["status"] != "cancelling" for run in await runs_of(client, actor)):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("a cancelled run never settled")


def make_engine(
    app: FastAPI, settings: Settings, clock: FakeClock, *, own_loop: bool = False
) -> CollectionScheduler:
    """A schedule engine (not started) over the app's services, reading `clock`; on the
    test's event loop, or with `own_loop` on one of its own, as in a service."""
    schedules: ScheduleService = app.state.instance.schedules
    executor: RunExecutor = app.state.instance.executor
    return CollectionScheduler(
        schedules, executor, Mailer(settings), settings, clock=clock, own_loop=own_loop
    )
