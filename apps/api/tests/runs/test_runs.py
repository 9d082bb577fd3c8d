"""Collection runs through the API: a run from a preset end to end with the sample
providers, and the lifecycle rules (validation, one active run per organization, the allowed
transitions, the list of runs)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from app.core.database import Database
from tests.helpers.actors import Actor, Actors
from tests.helpers.runs import (
    create_run,
    created_at,
    expected_listings,
    finished,
    start,
    stored_listings,
    wait_for,
)

# --- creation and lifecycle rules --------------------------------------------------------


async def test_run_from_preset_completes_with_consistent_progress(
    client: httpx.AsyncClient, admin: Actor, database: Database
) -> None:
    preset = await client.post(
        "/collection/presets",
        json={"name": "Mix", "category_ids": ["172282", "541966", "1055398"]},
        headers=admin.headers,
    )
    body = {"preset_id": preset.json()["id"], "products_per_category": 10}
    created = await client.post("/collection/runs", json=body, headers=admin.headers)
    assert created.status_code == 201, created.text
    run = created.json()
    assert run["status"] == "pending"
    assert run["phase"] is None
    assert run["trigger"] == "manual"
    assert run["name"].startswith("Mix ")
    assert run["category_ids"] == ["172282", "541966", "1055398"]
    assert run["created_by"] == str(admin.user_id)
    assert run["progress"]["categories_total"] == 3

    started = await start(client, admin, run["id"])
    assert started.status_code == 200
    assert started.json()["status"] == "running"
    assert started.json()["started_at"] is not None

    done = await wait_for(client, admin, run["id"], finished)
    assert done["status"] == "completed", done
    assert done["phase"] == "done"
    assert done["error"] is None
    progress = done["progress"]
    expected = await expected_listings(
        ["172282", "541966", "1055398"], 10, 20, as_of=created_at(run)
    )
    stored = await stored_listings(database, run["id"])
    assert sorted(stored) == sorted(expected)
    assert progress == {
        "categories_total": 3,
        "categories_done": 3,
        "products_found": 30,
        "products_searched": 30,
        "listings_found": len(expected),
        "sellers_found": len({seller for _, _, seller in expected}),
    }
    assert done["finished_at"] >= done["started_at"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "exactly one of preset_id or category_ids"),
        ({"preset_id": str(uuid.uuid4()), "category_ids": ["1"]}, "exactly one of"),
        ({"category_ids": []}, "at least one category ID"),
        ({"category_ids": ["x"]}, "digits only"),
        ({"category_ids": ["1"], "products_per_category": 0}, "greater than or equal to 1"),
        ({"category_ids": ["1"], "products_per_category": 101}, "less than or equal to 100"),
        ({"category_ids": ["1"], "priority": "high"}, "Extra inputs"),
    ],
)
async def test_invalid_run_request_is_422(
    client: httpx.AsyncClient, admin: Actor, body: Any, message: str
) -> None:
    response = await client.post("/collection/runs", json=body, headers=admin.headers)
    assert response.status_code == 422
    assert message in response.text
    runs = await client.get("/collection/runs", headers=admin.headers)
    assert runs.json()["items"] == []


async def test_preset_of_another_org_is_404(
    client: httpx.AsyncClient, actors: Actors, admin: Actor
) -> None:
    other = await actors.admin("Other")
    preset = await client.post(
        "/collection/presets", json={"name": "p", "category_ids": ["1"]}, headers=other.headers
    )
    response = await client.post(
        "/collection/runs", json={"preset_id": preset.json()["id"]}, headers=admin.headers
    )
    assert response.status_code == 404


async def test_second_active_run_is_409_naming_the_first(
    client: httpx.AsyncClient, admin: Actor
) -> None:
    first = await create_run(client, admin, ["1"])
    response = await client.post(
        "/collection/runs", json={"category_ids": ["2"]}, headers=admin.headers
    )
    assert response.status_code == 409
    assert first["id"] in response.json()["detail"]
    assert "(pending)" in response.json()["detail"]


async def test_twenty_concurrent_creates_yield_one_run(
    client: httpx.AsyncClient, admin: Actor
) -> None:
    responses = await asyncio.gather(
        *(
            client.post(
                "/collection/runs", json={"category_ids": [str(i + 1)]}, headers=admin.headers
            )
            for i in range(20)
        )
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * 19
    runs = (await client.get("/collection/runs", headers=admin.headers)).json()["items"]
    assert len(runs) == 1


async def test_other_orgs_runs_do_not_block(
    client: httpx.AsyncClient, actors: Actors, admin: Actor
) -> None:
    other = await actors.admin("Other")
    mine = await create_run(client, admin, ["1"])
    theirs = await create_run(client, other, ["1"])  # 201 although `mine` is active
    assert mine["status"] == theirs["status"] == "pending"
    assert mine["id"] != theirs["id"]


@pytest.mark.parametrize(
    ("setup", "action", "status"),
    [
        ([], "pause", "pending"),
        ([], "resume", "pending"),
        (["cancel"], "start", "cancelled"),
        (["cancel"], "cancel", "cancelled"),
        (["cancel"], "resume", "cancelled"),
    ],
)
async def test_disallowed_transition_is_409_with_current_status(
    client: httpx.AsyncClient, admin: Actor, setup: list[str], action: str, status: str
) -> None:
    run = await create_run(client, admin, ["1"])
    for step in setup:
        response = await client.post(f"/collection/runs/{run['id']}/{step}", headers=admin.headers)
        assert response.status_code == 200
    response = await client.post(f"/collection/runs/{run['id']}/{action}", headers=admin.headers)
    assert response.status_code == 409
    assert f"cannot {action} a run that is {status}" in response.json()["detail"]
    current = (await client.get(f"/collection/runs/{run['id']}", headers=admin.headers)).json()
    assert current["status"] == status


async def test_completed_run_cannot_be_started_paused_or_cancelled(
    client: httpx.AsyncClient, admin: Actor
) -> None:
    run = await create_run(client, admin, ["1"])
    await start(client, admin, run["id"])
    await wait_for(client, admin, run["id"], finished)
    for action in ("start", "pause", "resume", "cancel"):
        response = await client.post(
            f"/collection/runs/{run['id']}/{action}", headers=admin.headers
        )
        assert response.status_code == 409
        assert "completed" in response.json()["detail"]


async def test_cancel_pending_run_frees_the_slot(client: httpx.AsyncClient, admin: Actor) -> None:
    run = await create_run(client, admin, ["1"])
    cancelled = await client.post(f"/collection/runs/{run['id']}/cancel", headers=admin.headers)
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["finished_at"] is not None
    await create_run(client, admin, ["2"])


async def test_list_runs_filters_by_status_and_paginates(
    client: httpx.AsyncClient, admin: Actor
) -> None:
    ids = []
    for _ in range(3):
        run = await create_run(client, admin, ["1"])
        await client.post(f"/collection/runs/{run['id']}/cancel", headers=admin.headers)
        ids.append(run["id"])
    pending = await create_run(client, admin, ["1"])
    page = (await client.get("/collection/runs", params={"limit": 2}, headers=admin.headers)).json()
    assert [r["id"] for r in page["items"]] == [pending["id"], ids[2]]
    rest = (
        await client.get(
            "/collection/runs",
            params={"limit": 2, "cursor": page["next_cursor"]},
            headers=admin.headers,
        )
    ).json()
    assert [r["id"] for r in rest["items"]] == [ids[1], ids[0]]
    assert rest["next_cursor"] is None
    only_pending = (
        await client.get("/collection/runs", params={"status": "pending"}, headers=admin.headers)
    ).json()
    assert [r["id"] for r in only_pending["items"]] == [pending["id"]]
    bad = await client.get("/collection/runs", params={"status": "done"}, headers=admin.headers)
    assert bad.status_code == 422


# Pause, resume and cancel while running: tests/runs/test_run_pausing.py
