"""GET /collection/runs/{id}/listings: every listing once across pages, a seller's listings,
currency codes next to every amount, and the errors a caller can cause."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import sqlalchemy as sa

from app.core.clock import utcnow
from app.core.database import Database
from app.tables import CollectionRun
from tests.helpers.actors import Actor
from tests.helpers.runs import finished_run, stored_listings

BODY = {"category_ids": ["172282", "541966"], "products_per_category": 5}


async def _all(
    client: httpx.AsyncClient, actor: Actor, run_id: str, **params: Any
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params = {"limit": 9, **params}
    while True:
        response = await client.get(
            f"/collection/runs/{run_id}/listings", params=params, headers=actor.headers
        )
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["fee_percent"] == "13.25"
        items += page["items"]
        if page["next_cursor"] is None:
            return items
        params["cursor"] = page["next_cursor"]


async def test_pages_hold_every_listing_once_with_currencies(
    client: httpx.AsyncClient, admin: Actor, database: Database
) -> None:
    run_id = await finished_run(client, admin, BODY)
    items = await _all(client, admin, run_id)
    stored = await stored_listings(database, run_id)
    assert sorted((x["asin"], x["item_id"], x["username"]) for x in items) == sorted(stored)
    assert [(x["asin"], x["item_id"]) for x in items] == sorted(
        (x["asin"], x["item_id"]) for x in items
    )
    for item in items:
        assert item["currency"] == item["amazon_currency"] == "USD"
        assert item["product_title"]
        if item["shipping"] is not None:
            assert item["shipping_currency"] == "USD"
        if item["estimated_margin"] is not None:
            assert item["margin_currency"] == "USD"
        else:
            assert item["margin_note"]


async def test_a_sellers_listings_are_its_own_and_add_up_to_the_run(
    client: httpx.AsyncClient, admin: Actor
) -> None:
    run_id = await finished_run(client, admin, BODY)
    everything = await _all(client, admin, run_id)
    sellers = (
        await client.get(
            f"/collection/runs/{run_id}/sellers", params={"limit": 200}, headers=admin.headers
        )
    ).json()["items"]
    seen: list[dict[str, Any]] = []
    for seller in sellers:
        own = await _all(client, admin, run_id, seller=seller["username"])
        assert {x["username"] for x in own} == {seller["username"]}
        assert len(own) == seller["listings"]
        seen += own
    assert sorted(seen, key=lambda x: (x["asin"], x["item_id"])) == everything
    nobody = await _all(client, admin, run_id, seller="nobody-sells-this")
    assert nobody == []


async def test_bad_cursor_seller_and_purged_results(
    client: httpx.AsyncClient, admin: Actor, database: Database
) -> None:
    run_id = await finished_run(client, admin, BODY)
    path = f"/collection/runs/{run_id}/listings"
    for cursor in ("garbage", "eyJvZmZzZXQiOiAxfQ", "eyJrZXkiOiBbImEiXX0"):  # offset; 1 part
        bad = await client.get(path, params={"cursor": cursor}, headers=admin.headers)
        assert bad.status_code == 400, bad.text
        assert "cursor is not valid" in bad.json()["detail"]
    control = await client.get(path, params={"seller": "a\x00b"}, headers=admin.headers)
    assert control.status_code == 422
    too_long = await client.get(path, params={"seller": "x" * 101}, headers=admin.headers)
    assert too_long.status_code == 422

    async with database.transaction() as session:
        await session.execute(
            sa.update(CollectionRun)
            .where(CollectionRun.id == uuid.UUID(run_id))
            .values(results_purged_at=utcnow())
        )
    gone = await client.get(path, headers=admin.headers)
    assert gone.status_code == 410
    assert "retention" in gone.json()["detail"]
