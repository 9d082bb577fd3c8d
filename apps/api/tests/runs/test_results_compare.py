"""Which run a run's sellers are compared with ("New"): the previous completed run of the
same preset, named in the API and on the run page; a run of a category list is compared
with the previous run of the same list."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI

from app.scheduling.schedules import ScheduleService
from tests.helpers.actors import Actor, Actors
from tests.helpers.browser import BrowserFactory
from tests.helpers.scheduling import FakeClock, enable, make_org


async def _run(client: httpx.AsyncClient, admin: Actor, **source: Any) -> dict[str, Any]:
    """A completed run of a preset (`preset_id=`) or of a list (`category_ids=`)."""
    created = await client.post(
        "/collection/runs", json={**source, "products_per_category": 5}, headers=admin.headers
    )
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    await client.post(f"/collection/runs/{run_id}/start", headers=admin.headers)
    return await _finished(client, admin, run_id)


async def _finished(client: httpx.AsyncClient, admin: Actor, run_id: str) -> dict[str, Any]:
    for _ in range(600):
        run: dict[str, Any] = (
            await client.get(f"/collection/runs/{run_id}", headers=admin.headers)
        ).json()
        if run["status"] not in ("pending", "running"):
            assert run["status"] == "completed", run
            return run
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish")


async def _sellers(client: httpx.AsyncClient, admin: Actor, run_id: str) -> dict[str, Any]:
    page: dict[str, Any] = (
        await client.get(
            f"/collection/runs/{run_id}/sellers", params={"limit": 200}, headers=admin.headers
        )
    ).json()
    return page


async def _preset(client: httpx.AsyncClient, admin: Actor, name: str, ids: list[str]) -> str:
    response = await client.post(
        "/collection/presets", json={"name": name, "category_ids": ids}, headers=admin.headers
    )
    assert response.status_code == 201, response.text
    preset_id: str = response.json()["id"]
    return preset_id


async def test_new_compares_with_the_previous_run_of_the_same_preset(
    client: httpx.AsyncClient, actors: Actors, browser: BrowserFactory
) -> None:
    admin = await actors.admin()
    tools = await _preset(client, admin, "Tools", ["172282"])
    toys = await _preset(client, admin, "Toys", ["541966"])
    first = await _run(client, admin, preset_id=tools)
    assert first["preset_id"] == tools
    # The latest completed run of the organization is another preset's: not the comparison.
    other = await _run(client, admin, preset_id=toys)
    await client.patch(
        f"/collection/presets/{tools}",
        json={"category_ids": ["172282", "541966"]},
        headers=admin.headers,
    )
    second = await _run(client, admin, preset_id=tools)

    before = {s["username"] for s in (await _sellers(client, admin, first["id"]))["items"]}
    page = await _sellers(client, admin, second["id"])
    assert page["compared_with_run_id"] == first["id"]
    assert {s["new_since_last_run"] for s in page["items"]} == {True, False}
    for seller in page["items"]:
        assert seller["new_since_last_run"] is (seller["username"] not in before)
    first_page = await _sellers(client, admin, first["id"])
    assert first_page["compared_with_run_id"] is None
    assert {s["new_since_last_run"] for s in first_page["items"]} == {None}
    assert (await _sellers(client, admin, other["id"]))["compared_with_run_id"] is None

    signed_in = await browser(admin)
    html = (await signed_in.get(f"/runs/{second['id']}")).text
    assert f'were not in <a href="/runs/{first["id"]}">{first["name"]}</a>' in html
    assert "the previous completed run of this preset" in html
    assert (
        "No earlier completed run of this preset"
        in (await signed_in.get(f"/runs/{other['id']}")).text
    )


async def test_a_run_of_a_category_list_compares_with_the_same_list(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    admin = await actors.admin()
    first = await _run(client, admin, category_ids=["172282", "541966"])
    await _run(client, admin, category_ids=["172282"])
    preset = await _preset(client, admin, "Same categories", ["172282", "541966"])
    await _run(client, admin, preset_id=preset)  # a preset's run, not a list's
    again = await _run(client, admin, category_ids=["172282", "541966"])

    page = await _sellers(client, admin, again["id"])
    assert page["compared_with_run_id"] == first["id"]
    assert {s["new_since_last_run"] for s in page["items"]} == {False}  # the same sellers
    assert again["preset_id"] is None


async def test_a_scheduled_run_records_its_preset(
    client: httpx.AsyncClient, actors: Actors, app: FastAPI, clock: FakeClock
) -> None:
    org = await make_org(client, actors)
    await enable(client, org)
    clock.set(datetime(2027, 2, 1, 0, 0, 1, tzinfo=UTC))
    schedules: ScheduleService = app.state.instance.schedules
    (fire,) = await schedules.fire_due()
    assert fire.run_id is not None
    run = (await client.get(f"/collection/runs/{fire.run_id}", headers=org.admin.headers)).json()
    assert run["preset_id"] == org.preset_id
    await client.post(f"/collection/runs/{fire.run_id}/cancel", headers=org.admin.headers)
