"""Data the web tests set up through the API (a preset, a completed run, waiting for a run
to reach a status), and the content type of the pages."""

from __future__ import annotations

import asyncio

import httpx

from tests.helpers.actors import Actor

HTML = "text/html; charset=utf-8"  # the content type of every page


async def make_preset(client: httpx.AsyncClient, actor: Actor, name: str = "Electronics") -> str:
    """A preset of two categories; its id."""
    response = await client.post(
        "/collection/presets",
        json={"name": name, "category_ids": ["172282", "541966"]},
        headers=actor.headers,
    )
    assert response.status_code == 201, response.text
    preset_id: str = response.json()["id"]
    return preset_id


async def completed_run(
    client: httpx.AsyncClient,
    actor: Actor,
    categories: list[str] | None = None,
    products: int = 5,
    *,
    preset_id: str | None = None,
) -> str:
    """A run of `categories` (or of the preset), started and waited for until it completes;
    its id."""
    source = {"preset_id": preset_id} if preset_id else {"category_ids": categories}
    created = await client.post(
        "/collection/runs",
        json={**source, "products_per_category": products},
        headers=actor.headers,
    )
    assert created.status_code == 201, created.text
    run_id: str = created.json()["id"]
    await client.post(f"/collection/runs/{run_id}/start", headers=actor.headers)
    await wait_until(client, actor, run_id, "completed")
    return run_id


async def wait_until(
    client: httpx.AsyncClient, actor: Actor, run_id: str, status: str, within: float = 30.0
) -> None:
    """Poll the run until it has `status`; a run that failed or was cancelled instead fails
    the test at once."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        run = (await client.get(f"/collection/runs/{run_id}", headers=actor.headers)).json()
        if run["status"] == status:
            return
        assert run["status"] not in {"failed", "cancelled"} - {status}, run
        assert asyncio.get_running_loop().time() < deadline, run
        await asyncio.sleep(0.05)
