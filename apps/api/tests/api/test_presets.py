"""Category presets: validation with messages that say what to fix, uniqueness, pagination."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.helpers.actors import Actor, Actors


async def _create(client: httpx.AsyncClient, admin: Actor, body: Any) -> httpx.Response:
    return await client.post("/collection/presets", json=body, headers=admin.headers)


def _messages(response: httpx.Response) -> str:
    return " | ".join(
        f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in response.json()["detail"]
    )


async def test_create_normalizes_and_dedupes(client: httpx.AsyncClient, admin: Actor) -> None:
    response = await _create(
        client, admin, {"name": "  Electronics ", "category_ids": [172282, "541966", " 172282 "]}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "Electronics"
    assert body["category_ids"] == ["172282", "541966"]
    assert body["created_by"] == str(admin.user_id)
    fetched = await client.get(f"/collection/presets/{body['id']}", headers=admin.headers)
    assert fetched.json() == body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "x", "category_ids": []}, "at least one category ID"),
        ({"name": "x", "category_ids": ["12a"]}, "(digits only), got '12a'"),
        ({"name": "x", "category_ids": [-5]}, "positive numeric category ID, got -5"),
        ({"name": "x", "category_ids": [True]}, "got a boolean"),
        ({"name": "x", "category_ids": [1.5]}, "got float"),
        ({"name": "x", "category_ids": ["1" * 21]}, "at most 20 digits, got 21 digits"),
        # an integer meets the same rule as the digits it is written with
        ({"name": "x", "category_ids": [10**29]}, "at most 20 digits, got 30 digits"),
        ({"name": "x", "category_ids": [0]}, "positive numeric category ID, got 0"),
        ({"name": "x", "category_ids": ["000"]}, "positive numeric category ID, got '000'"),
        ({"name": "x", "category_ids": [str(i) for i in range(1, 102)]}, "at most 100 distinct"),
        ({"name": "x", "category_ids": "172282"}, "valid list"),
        ({"name": "   ", "category_ids": ["1"]}, "at least 1 character"),
        ({"name": "n" * 101, "category_ids": ["1"]}, "at most 100 characters"),
        ({"category_ids": ["1"]}, "name: Field required"),
        ({"name": "x", "category_ids": ["1"], "colour": "red"}, "colour: Extra inputs"),
    ],
)
async def test_invalid_preset_is_422_with_reason(
    client: httpx.AsyncClient, admin: Actor, body: Any, message: str
) -> None:
    response = await _create(client, admin, body)
    assert response.status_code == 422
    assert message in _messages(response)
    listing = await client.get("/collection/presets", headers=admin.headers)
    assert listing.json()["items"] == []  # nothing half-written


async def test_exactly_100_distinct_ids_is_fine(client: httpx.AsyncClient, admin: Actor) -> None:
    ids = [str(i) for i in range(1, 101)] + ["1", "2"]
    response = await _create(client, admin, {"name": "big", "category_ids": ids})
    assert response.status_code == 201
    assert len(response.json()["category_ids"]) == 100


async def test_malformed_json_is_422(client: httpx.AsyncClient, admin: Actor) -> None:
    response = await client.post(
        "/collection/presets",
        content=b'{"name": "x", ',
        headers={**admin.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


async def test_duplicate_name_is_409(client: httpx.AsyncClient, admin: Actor) -> None:
    assert (await _create(client, admin, {"name": "A", "category_ids": ["1"]})).status_code == 201
    response = await _create(client, admin, {"name": "A", "category_ids": ["2"]})
    assert response.status_code == 409
    assert response.json()["detail"] == "a preset named 'A' already exists; choose another name"


async def test_same_name_in_another_org_is_fine(
    client: httpx.AsyncClient, actors: Actors, admin: Actor
) -> None:
    other = await actors.admin("Other")
    assert (await _create(client, admin, {"name": "A", "category_ids": ["1"]})).status_code == 201
    assert (await _create(client, other, {"name": "A", "category_ids": ["1"]})).status_code == 201


async def test_concurrent_creates_with_one_name_yield_one(
    client: httpx.AsyncClient, admin: Actor
) -> None:
    responses = await asyncio.gather(
        *(_create(client, admin, {"name": "race", "category_ids": [str(i)]}) for i in range(1, 11))
    )
    assert sorted(r.status_code for r in responses) == [201] + [409] * 9
    listing = await client.get("/collection/presets", headers=admin.headers)
    assert len(listing.json()["items"]) == 1


async def test_patch_updates_given_fields_only(client: httpx.AsyncClient, admin: Actor) -> None:
    created = (await _create(client, admin, {"name": "A", "category_ids": ["1", "2"]})).json()
    url = f"/collection/presets/{created['id']}"
    renamed = await client.patch(url, json={"name": "B"}, headers=admin.headers)
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "B"
    assert renamed.json()["category_ids"] == ["1", "2"]
    assert renamed.json()["updated_at"] >= created["updated_at"]
    recat = await client.patch(url, json={"category_ids": [3, 3, 4]}, headers=admin.headers)
    assert recat.json()["category_ids"] == ["3", "4"]
    assert recat.json()["name"] == "B"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": None}, "name may not be null"),
        ({"category_ids": []}, "at least one category ID"),
        ({"nme": "typo"}, "nme: Extra inputs"),
    ],
)
async def test_invalid_patch_is_422_and_changes_nothing(
    client: httpx.AsyncClient, admin: Actor, body: Any, message: str
) -> None:
    created = (await _create(client, admin, {"name": "A", "category_ids": ["1"]})).json()
    url = f"/collection/presets/{created['id']}"
    response = await client.patch(url, json=body, headers=admin.headers)
    assert response.status_code == 422
    assert message in _messages(response)
    assert (await client.get(url, headers=admin.headers)).json() == created


async def test_rename_onto_existing_name_is_409(client: httpx.AsyncClient, admin: Actor) -> None:
    await _create(client, admin, {"name": "A", "category_ids": ["1"]})
    b = (await _create(client, admin, {"name": "B", "category_ids": ["1"]})).json()
    url = f"/collection/presets/{b['id']}"
    response = await client.patch(url, json={"name": "A"}, headers=admin.headers)
    assert response.status_code == 409
    assert (await client.get(url, headers=admin.headers)).json()["name"] == "B"


async def test_delete_then_gone(client: httpx.AsyncClient, admin: Actor) -> None:
    created = (await _create(client, admin, {"name": "A", "category_ids": ["1"]})).json()
    url = f"/collection/presets/{created['id']}"
    assert (await client.delete(url, headers=admin.headers)).status_code == 204
    assert (await client.get(url, headers=admin.headers)).status_code == 404
    assert (await client.delete(url, headers=admin.headers)).status_code == 404


async def test_malformed_id_is_422(client: httpx.AsyncClient, admin: Actor) -> None:
    response = await client.get("/collection/presets/not-a-uuid", headers=admin.headers)
    assert response.status_code == 422
    assert "valid UUID" in _messages(response)


async def test_pagination_walks_every_preset_once_newest_first(
    client: httpx.AsyncClient, admin: Actor
) -> None:
    created = []
    for i in range(7):
        response = await _create(client, admin, {"name": f"p{i}", "category_ids": [str(i + 1)]})
        created.append(response.json()["id"])
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (
            await client.get("/collection/presets", params=params, headers=admin.headers)
        ).json()
        seen += [p["id"] for p in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(created))


@pytest.mark.parametrize("cursor", ["garbage", "e30", "WyJ4IiwgInkiXQ"])
async def test_bad_cursor_is_400(client: httpx.AsyncClient, admin: Actor, cursor: str) -> None:
    response = await client.get(
        "/collection/presets", params={"cursor": cursor}, headers=admin.headers
    )
    assert response.status_code == 400
    assert "cursor" in response.json()["detail"]


@pytest.mark.parametrize("limit", [0, 201, "many"])
async def test_bad_limit_is_422(client: httpx.AsyncClient, admin: Actor, limit: Any) -> None:
    response = await client.get(
        "/collection/presets", params={"limit": limit}, headers=admin.headers
    )
    assert response.status_code == 422
