"""Runs of an organization made completed as the pipeline completes them (ranked, then
recorded in the seller directory), with the creation time a test chooses; and the whole
directory read back through the API, page by page."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import sqlalchemy as sa

from app.core.clock import utcnow
from app.core.database import Database
from app.runs import directory, sellers
from app.tables import CollectionRun, RunProduct, RunStatus
from tests.helpers.actors import Actor
from tests.helpers.listings import Products, write_listings


async def new_run(
    client: httpx.AsyncClient, actor: Actor, *, preset_id: str | None = None, categories: Any = None
) -> uuid.UUID:
    """A run of a preset (or of a category list), cancelled at once so that the
    organization may create the next; its rows are then written directly."""
    body = {"preset_id": preset_id} if preset_id else {"category_ids": categories or ["1"]}
    created = await client.post("/collection/runs", json=body, headers=actor.headers)
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    cancelled = await client.post(f"/collection/runs/{run_id}/cancel", headers=actor.headers)
    assert cancelled.status_code == 200, cancelled.text
    return uuid.UUID(run_id)


async def set_created_at(database: Database, run_id: uuid.UUID, created_at: datetime) -> None:
    async with database.transaction() as session:
        await session.execute(
            sa.update(CollectionRun).where(CollectionRun.id == run_id).values(created_at=created_at)
        )


async def complete(
    database: Database, run_id: uuid.UUID, *, status: RunStatus = RunStatus.COMPLETED
) -> bool:
    """What the pipeline's finish does to a run: its status, its ranking, and (completed
    runs only) its sellers in the directory, in one transaction. Whether it was recorded."""
    now = utcnow()
    async with database.transaction() as session:
        await session.execute(
            sa.update(CollectionRun)
            .where(CollectionRun.id == run_id)
            .values(status=status, finished_at=now)
        )
        await sellers.finish(session, run_id)
        return await directory.record_run(session, run_id, now=now)


async def completed_run(
    client: httpx.AsyncClient,
    database: Database,
    actor: Actor,
    products: Products,
    created_at: datetime,
    *,
    preset_id: str | None = None,
    categories: Any = None,
) -> uuid.UUID:
    """A run with these listings, created at `created_at`, completed and recorded."""
    run_id = await new_run(client, actor, preset_id=preset_id, categories=categories)
    await set_created_at(database, run_id, created_at)
    await write_products(database, run_id, products)
    await write_listings(database, run_id, products)
    assert await complete(database, run_id)
    return run_id


async def write_products(database: Database, run_id: uuid.UUID, products: Products) -> None:
    """The Amazon products the listings were found for (one category, in ASIN order)."""
    async with database.transaction() as session:
        for position, asin in enumerate(sorted(products)):
            session.add(
                RunProduct(
                    run_id=run_id,
                    asin=asin,
                    category_id="1",
                    category_position=0,
                    sales_rank=position + 1,
                    title=f"Product {asin}",
                    brand=None,
                    price=Decimal("5.00") + position,
                    currency="USD",
                    upcs=[],
                    eans=[],
                    listings_found=len(products[asin]),
                    searched_at=utcnow(),
                )
            )


async def directory_pages(
    client: httpx.AsyncClient, actor: Actor, limit: int = 3, **params: Any
) -> list[dict[str, Any]]:
    """Every seller of GET /collection/sellers with these parameters, `limit` a page."""
    query = {key: value for key, value in params.items() if value is not None}
    query["limit"] = limit
    items: list[dict[str, Any]] = []
    while True:
        response = await client.get("/collection/sellers", params=query, headers=actor.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= limit
        items += page["items"]
        if page["next_cursor"] is None:
            return items
        query["cursor"] = page["next_cursor"]


def listings(*sellers_per_product: str, price: str = "10.00") -> Products:
    """Listings of products B000000000, B000000001, ...: one product per argument, whose
    characters are the usernames listing it (one listing each; `seller-x` for `x`)."""
    products: Products = {}
    for p, names in enumerate(sellers_per_product):
        asin = f"B{p:09d}"
        products[asin] = [
            {
                "asin": asin,
                "item_id": f"v1|{p}|{i}",
                "title": f"Listing {p}-{i}",
                "price": Decimal(price),
                "currency": "USD",
                "seller_username": f"seller-{name}",
                "seller_feedback_score": 10,
                "seller_feedback_percentage": Decimal("99.0"),
                "url": f"https://www.ebay.com/itm/{p}{i}",
            }
            for i, name in enumerate(names)
        ]
    return products
