"""The directory's pages: search, sort and cursors (and the 400s and 404s a caller can
cause), one seller's history and current listings, another organization's sellers, the
directory after retention deleted results, and two runs recorded at once."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx

from app.core.database import Database
from app.runs.results import purge_expired_results
from tests.helpers.actors import Actor, Actors
from tests.helpers.directory import (
    complete,
    completed_run,
    directory_pages,
    listings,
    new_run,
    set_created_at,
    write_products,
)
from tests.helpers.listings import write_listings

T0 = datetime(2026, 6, 1, tzinfo=UTC)


async def _preset(client: httpx.AsyncClient, admin: Actor, name: str) -> str:
    response = await client.post(
        "/collection/presets", json={"name": name, "category_ids": ["1"]}, headers=admin.headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _names(items: list[dict[str, object]]) -> list[object]:
    return [item["username"] for item in items]


async def test_search_is_a_case_insensitive_substring_taken_literally(
    client: httpx.AsyncClient, actors: Actors, database: Database
) -> None:
    admin = await actors.admin()
    products = listings("ab", "a")
    products["B000000009"] = [
        {
            **products["B000000000"][0],
            "asin": "B000000009",
            "item_id": f"v1|9|{i}",
            "seller_username": name,
        }
        for i, name in enumerate(["Big_Deals", "big%deals", "BIGDEALS"])
    ]
    await completed_run(client, database, admin, products, T0)
    search = {
        q: sorted(_names(await directory_pages(client, admin, q=q)), key=str)
        for q in ("SELLER-", "big", "_", "%", "g_d", "nobody")
    }
    assert search == {
        "SELLER-": ["seller-a", "seller-b"],
        "big": ["BIGDEALS", "Big_Deals", "big%deals"],
        "_": ["Big_Deals"],  # not a LIKE wildcard
        "%": ["big%deals"],
        "g_d": ["Big_Deals"],
        "nobody": [],
    }
    everyone = await directory_pages(client, admin, q="")
    assert len(everyone) == 5
    for bad in ("a\x00b", "x" * 101):
        refused = await client.get("/collection/sellers", params={"q": bad}, headers=admin.headers)
        assert refused.status_code == 422, refused.text


async def test_pages_by_cursor_and_the_cursors_a_caller_can_break(
    client: httpx.AsyncClient, actors: Actors, database: Database
) -> None:
    admin = await actors.admin()
    await completed_run(client, database, admin, listings("abcdefg", "abc", "a"), T0)
    by_name = await directory_pages(client, admin, 2, sort="username")
    assert _names(by_name) == [f"seller-{c}" for c in "abcdefg"]
    assert _names(await directory_pages(client, admin, 3, sort="username", order="desc")) == [
        f"seller-{c}" for c in "gfedcba"
    ]
    # the default order: newest first, then best rank (a: 3 products, b and c: 2, ...)
    assert _names(await directory_pages(client, admin, 2)) == [f"seller-{c}" for c in "abcdefg"]

    first = (
        await client.get("/collection/sellers", params={"limit": 2}, headers=admin.headers)
    ).json()
    cursor = first["next_cursor"]
    other_order = await client.get(
        "/collection/sellers", params={"cursor": cursor, "sort": "rank"}, headers=admin.headers
    )
    assert other_order.status_code == 400
    assert "same sort and order" in other_order.json()["detail"]
    forged = base64.urlsafe_b64encode(json.dumps(["last_seen", "desc", 1, 2, 3]).encode())
    for bad in ("garbage", forged.decode().rstrip("="), "x" * 801):
        response = await client.get(
            "/collection/sellers", params={"cursor": bad}, headers=admin.headers
        )
        assert response.status_code in (400, 422), response.text
        if response.status_code == 400:
            assert "cursor is not valid" in response.json()["detail"]
    for bad_param in ({"sort": "feedback"}, {"order": "up"}, {"preset_id": "nope"}):
        response = await client.get("/collection/sellers", params=bad_param, headers=admin.headers)
        assert response.status_code == 422, response.text


async def test_a_new_run_between_pages_neither_repeats_nor_skips_a_seller(
    client: httpx.AsyncClient, actors: Actors, database: Database
) -> None:
    """Keyset pages: a seller that arrives before the cursor while one pages does not
    shift the next page (an offset would show seller-c twice)."""
    admin = await actors.admin()
    await completed_run(client, database, admin, listings("abcdef"), T0)
    params = {"limit": 3, "sort": "username"}
    first = (await client.get("/collection/sellers", params=params, headers=admin.headers)).json()
    await completed_run(client, database, admin, listings("a0"), T0 + timedelta(days=1))
    rest = await client.get(
        "/collection/sellers",
        params={**params, "cursor": first["next_cursor"], "limit": 10},
        headers=admin.headers,
    )
    assert _names(first["items"]) == ["seller-a", "seller-b", "seller-c"]
    assert _names(rest.json()["items"]) == ["seller-d", "seller-e", "seller-f"]


async def test_filter_by_preset_and_its_404s(
    client: httpx.AsyncClient, actors: Actors, database: Database
) -> None:
    admin, stranger = await actors.admin(), await actors.admin()
    tools, toys = await _preset(client, admin, "Tools"), await _preset(client, admin, "Toys")
    await completed_run(client, database, admin, listings("ab"), T0, preset_id=tools)
    await completed_run(
        client, database, admin, listings("bc"), T0 + timedelta(hours=1), preset_id=toys
    )
    assert _names(await directory_pages(client, admin, preset_id=tools)) == ["seller-a", "seller-b"]
    assert _names(await directory_pages(client, admin, preset_id=toys)) == ["seller-b", "seller-c"]
    everything = {i["username"]: i for i in await directory_pages(client, admin)}
    assert everything["seller-b"]["runs_seen"] == 2
    assert everything["seller-b"]["last_preset_id"] == toys

    unused = await _preset(client, admin, "Unused")
    assert await directory_pages(client, admin, preset_id=unused) == []
    deleted = await client.delete(f"/collection/presets/{tools}", headers=admin.headers)
    assert deleted.status_code == 204
    assert _names(await directory_pages(client, admin, preset_id=tools)) == ["seller-a", "seller-b"]
    detail = (await client.get("/collection/sellers/seller-a", headers=admin.headers)).json()
    assert [(h["preset_id"], h["preset_name"]) for h in detail["history"]] == [(tools, None)]

    theirs = await _preset(client, stranger, "Theirs")
    for preset_id in (theirs, "00000000-0000-0000-0000-000000000001"):
        response = await client.get(
            "/collection/sellers", params={"preset_id": preset_id}, headers=admin.headers
        )
        assert response.status_code == 404
        assert response.json()["detail"] == f"preset {preset_id} not found"


async def test_one_seller_history_per_preset_and_current_listings(
    client: httpx.AsyncClient, actors: Actors, database: Database
) -> None:
    admin = await actors.admin()
    tools = await _preset(client, admin, "Tools")
    first = await completed_run(client, database, admin, listings("ab", "a"), T0, preset_id=tools)
    second = await completed_run(
        client,
        database,
        admin,
        listings("b", "ab", "b", price="12.50"),
        T0 + timedelta(days=1),
        preset_id=tools,
    )
    listed = await completed_run(
        client, database, admin, listings("a"), T0 + timedelta(days=2), categories=["7"]
    )
    response = await client.get("/collection/sellers/seller-b", headers=admin.headers)
    assert response.status_code == 200, response.text
    detail = response.json()
    assert (detail["runs_seen"], detail["rank"], detail["trend"], detail["last_run_id"]) == (
        2,
        1,
        "up",
        str(second),
    )
    (history,) = detail["history"]
    assert (history["preset_id"], history["preset_name"], history["runs_seen"]) == (
        tools,
        "Tools",
        2,
    )
    assert [
        (r["run_id"], r["rank"], r["products"], r["listings"], r["median_price"], r["currency"])
        for r in history["runs"]
    ] == [(str(second), 1, 3, 3, "12.50", "USD"), (str(first), 2, 1, 1, "10.00", "USD")]
    current = detail["current_listings"]
    assert (current["run_id"], current["results_purged"], current["total"]) == (
        str(second),
        False,
        3,
    )
    assert [
        (
            i["product"]["asin"],
            i["product"]["title"],
            i["product"]["price"],
            i["price"],
            i["currency"],
        )
        for i in current["items"]
    ] == [
        ("B000000000", "Product B000000000", "5.00", "12.50", "USD"),
        ("B000000001", "Product B000000001", "6.00", "12.50", "USD"),
        ("B000000002", "Product B000000002", "7.00", "12.50", "USD"),
    ]
    assert current["items"][0]["url"].startswith("https://www.ebay.com/itm/")

    seller_a = (await client.get("/collection/sellers/seller-a", headers=admin.headers)).json()
    assert [h["preset_id"] for h in seller_a["history"]] == [None, tools]  # latest first
    assert seller_a["history"][0]["category_ids"] == ["7"]
    assert (seller_a["last_run_id"], seller_a["last_preset_id"], seller_a["trend"]) == (
        str(listed),
        None,
        "new",  # the list's first run
    )
    assert seller_a["history"][1]["trend"] == "down"

    for missing in ("seller-z", "SELLER-B", "seller-b%20"):
        absent = await client.get(f"/collection/sellers/{missing}", headers=admin.headers)
        assert absent.status_code == 404
        assert absent.json()["detail"].startswith("seller ")


async def test_another_organizations_sellers_are_not_found(
    client: httpx.AsyncClient, actors: Actors, database: Database
) -> None:
    admin, stranger = await actors.admin(), await actors.admin()
    await completed_run(client, database, stranger, listings("ab"), T0)
    await completed_run(client, database, admin, listings("b"), T0)
    assert _names(await directory_pages(client, admin)) == ["seller-b"]
    theirs = await client.get("/collection/sellers/seller-a", headers=admin.headers)
    assert theirs.status_code == 404
    assert theirs.json()["detail"] == "seller seller-a not found"
    shared = (await client.get("/collection/sellers/seller-b", headers=admin.headers)).json()
    assert shared["runs_seen"] == 1
    assert [len(h["runs"]) for h in shared["history"]] == [1]


async def test_retention_keeps_the_directory(
    client: httpx.AsyncClient, actors: Actors, database: Database
) -> None:
    """Deleting old results leaves every directory row as it was; a seller's history then
    lists the runs whose results are kept, and its listings say they are gone."""
    admin = await actors.admin()
    old = await completed_run(client, database, admin, listings("ab", "a"), T0)
    await completed_run(client, database, admin, listings("b"), T0 + timedelta(days=1))
    before = await directory_pages(client, admin)
    detail_before = (await client.get("/collection/sellers/seller-a", headers=admin.headers)).json()
    assert detail_before["current_listings"]["total"] == 2

    await purge_expired_results(
        database, now=datetime.now(UTC) + timedelta(days=1), retention=timedelta(0), batch_size=100
    )
    assert await directory_pages(client, admin) == before  # both runs' results are gone
    detail = (await client.get("/collection/sellers/seller-a", headers=admin.headers)).json()
    assert (detail["runs_seen"], detail["trend"], detail["last_run_id"]) == (1, "gone", str(old))
    assert detail["history"][0]["runs"] == []
    assert detail["current_listings"] == {
        **detail_before["current_listings"],
        "results_purged": True,
        "total": 0,
        "items": [],
    }

    newer = await completed_run(client, database, admin, listings("ac"), T0 + timedelta(days=2))
    after = {i["username"]: i for i in await directory_pages(client, admin)}
    assert (after["seller-a"]["runs_seen"], after["seller-a"]["trend"]) == (2, "new")
    assert (after["seller-b"]["trend"], after["seller-c"]["trend"]) == ("gone", "new")
    history = (await client.get("/collection/sellers/seller-a", headers=admin.headers)).json()
    assert [r["run_id"] for r in history["history"][0]["runs"]] == [str(newer)]


async def test_two_runs_of_different_presets_recorded_at_once(
    client: httpx.AsyncClient, actors: Actors, database: Database
) -> None:
    """Two transactions record runs of two presets that share 300 sellers (PostgreSQL runs
    them concurrently; SQLite one after the other): every count adds up, nothing deadlocks."""
    admin = await actors.admin()
    presets = [await _preset(client, admin, "One"), await _preset(client, admin, "Two")]
    shared = [f"s{i:03d}" for i in range(300)]
    runs = []
    for number, preset in enumerate(presets):
        run_id = await new_run(client, admin, preset_id=preset)
        await set_created_at(database, run_id, T0 + timedelta(hours=number))
        products = {
            f"B{p:09d}": [
                {
                    "asin": f"B{p:09d}",
                    "item_id": f"v1|{p}|{i}",
                    "title": "t",
                    "price": Decimal("1.00"),
                    "currency": "USD",
                    "seller_username": name,
                    "seller_feedback_score": None,
                    "seller_feedback_percentage": None,
                    "url": "https://www.ebay.com/itm/1",
                }
                for i, name in enumerate(shared[p * 30 : (p + 1) * 30])
            ]
            for p in range(10)
        }
        await write_products(database, run_id, products)
        await write_listings(database, run_id, products)
        runs.append(run_id)
    assert await asyncio.gather(*(complete(database, run_id) for run_id in runs)) == [True, True]
    everything = await directory_pages(client, admin, 200)
    assert len(everything) == 300
    assert {item["runs_seen"] for item in everything} == {2}
    assert {item["last_run_id"] for item in everything} == {str(runs[1])}
    assert {item["trend"] for item in everything} == {"new"}
    for preset in presets:
        rows = await directory_pages(client, admin, 200, preset_id=preset)
        assert [row["runs_seen"] for row in rows] == [1] * 300
