"""Preset names are unique in an organization regardless of case (as Python case-folds
them, the same on SQLite and PostgreSQL)."""

from __future__ import annotations

import httpx

from tests.helpers.actors import Actor, Actors


async def _create(client: httpx.AsyncClient, admin: Actor, name: str) -> httpx.Response:
    return await client.post(
        "/collection/presets", json={"name": name, "category_ids": ["1"]}, headers=admin.headers
    )


async def test_names_that_differ_only_by_case_are_refused(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    admin = await actors.admin()
    assert (await _create(client, admin, "Electronics")).status_code == 201
    for name in ("electronics", "ELECTRONICS", "eLeCtRoNiCs"):
        refused = await _create(client, admin, name)
        assert refused.status_code == 409, name
        assert refused.json()["detail"] == (
            "a preset named 'Electronics' already exists, and names that differ only in upper "
            "and lower case count as the same; choose another name"
        )
    assert (await _create(client, admin, "Straße")).status_code == 201
    assert (await _create(client, admin, "STRASSE")).status_code == 409
    same = await _create(client, admin, "Electronics")
    assert (
        same.json()["detail"] == "a preset named 'Electronics' already exists; choose another name"
    )

    other = (await _create(client, admin, "Toys")).json()["id"]
    renamed = await client.patch(
        f"/collection/presets/{other}", json={"name": "eLECTRONICS"}, headers=admin.headers
    )
    assert renamed.status_code == 409
    own = (await client.get("/collection/presets", headers=admin.headers)).json()["items"]
    electronics = next(p["id"] for p in own if p["name"] == "Electronics")
    recased = await client.patch(
        f"/collection/presets/{electronics}", json={"name": "ELECTRONICS"}, headers=admin.headers
    )
    assert recased.status_code == 200, recased.text  # its own name in other case: fine
    assert recased.json()["name"] == "ELECTRONICS"

    elsewhere = await actors.admin("Elsewhere")
    assert (await _create(client, elsewhere, "electronics")).status_code == 201
