"""Listings of a run written as its eBay checkpoints write them, random ones, and a run
finished as the pipeline finishes it."""

from __future__ import annotations

import random
import uuid
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from app.core.clock import utcnow
from app.core.database import Database
from app.runs import sellers
from app.tables import CollectionRun, RunListing, RunProduct, RunStatus

Products = dict[str, list[dict[str, Any]]]
"""Listings (rows of `run_listings` without `run_id`) per product ASIN."""


def random_products(rng: random.Random) -> dict[str, list[dict[str, Any]]]:
    """Listings per product as checkpoints write them: distinct item ids per product, few
    seller names (so ties and sellers across products are common), some without price."""
    names = [f"seller-{chr(97 + i)}" for i in range(rng.randint(1, 12))]
    products: dict[str, list[dict[str, Any]]] = {}
    for p in range(rng.randint(1, 15)):
        asin = f"B{p:09d}"
        products[asin] = [
            {
                "asin": asin,
                "item_id": f"v1|{p}|{i}",
                "title": "A listing",
                "price": None if rng.random() < 0.15 else Decimal(rng.randint(100, 9999)) / 100,
                "currency": "USD",
                "seller_username": rng.choice(names),
                "seller_feedback_score": None if rng.random() < 0.2 else rng.randint(0, 5000),
                "seller_feedback_percentage": Decimal("99.1"),
                "url": "https://www.ebay.com/itm/1",
            }
            for i in range(rng.randint(0, 6))
        ]
    return products


async def write_listings(
    database: Database, run_id: uuid.UUID, products: Products, *, per_transaction: int = 1
) -> int:
    """The products' listings, `per_transaction` products in a transaction (a group of eBay
    checkpoints); how many sellers the figures found new."""
    groups = list(products.values())
    new_sellers = 0
    for start in range(0, len(groups), per_transaction):
        async with database.transaction() as session:
            group = [
                [{"run_id": run_id, **listing} for listing in listings]
                for listings in groups[start : start + per_transaction]
            ]
            rows = [row for listing_rows in group for row in listing_rows]
            if rows:
                await session.execute(RunListing.__table__.insert(), rows)
            new_sellers += await sellers.record_products(session, run_id, group)
    return new_sellers


async def complete(database: Database, run_id: uuid.UUID) -> None:
    """Finish a run whose listings were written as the pipeline finishes it: its ranks and
    medians stored, its status completed."""
    async with database.transaction() as session:
        await sellers.finish(session, run_id)
        await session.execute(
            sa.update(CollectionRun)
            .where(CollectionRun.id == run_id)
            .values(status=RunStatus.COMPLETED, finished_at=utcnow())
        )


def later_products(products: Products, rng: random.Random) -> Products:
    """The same market some time later: listings dropped, re-priced or taken over by new
    sellers, and new products."""
    later: Products = {}
    for asin, listings in products.items():
        kept = []
        for listing in listings:
            if rng.random() < 0.2:
                continue
            listing = dict(listing)
            if rng.random() < 0.3 and listing["price"] is not None:
                listing["price"] = Decimal(rng.randint(100, 9999)) / 100
            if rng.random() < 0.1:
                listing["seller_username"] = f"newcomer-{rng.randint(1, 5)}"
            kept.append(listing)
        later[asin] = kept
    for p in range(len(products), len(products) + rng.randint(0, 3)):
        later[f"B{p:09d}"] = [
            {**template, "asin": f"B{p:09d}", "item_id": f"v1|{p}|{i}"}
            for i, template in enumerate(random_products(rng).get("B000000000", []))
        ]
    return later


def random_market(rng: random.Random) -> tuple[Products, dict[str, dict[str, Any]]]:
    """Listings as `random_products` makes them, with shipping (unknown, free or priced)
    and a few prices in other currencies; and the Amazon product of each ASIN (rows of
    `run_products` without `run_id`), some without price, in other currencies, or missing."""
    products = random_products(rng)
    amazon: dict[str, dict[str, Any]] = {}
    for position, (asin, listings) in enumerate(products.items()):
        for listing in listings:
            listing["currency"] = "EUR" if rng.random() < 0.1 else "USD"
            draw = rng.random()
            if draw < 0.2:
                listing["shipping"], listing["shipping_currency"] = None, None
            else:
                cost = Decimal(0) if draw < 0.5 else Decimal(rng.randint(1, 2500)) / 100
                other = rng.random() < 0.05
                listing["shipping"] = cost
                listing["shipping_currency"] = "GBP" if other else listing["currency"]
        if rng.random() < 0.05:
            continue  # listings of a product the run did not store
        amazon[asin] = {
            "asin": asin,
            "category_id": "172282",
            "category_position": 0,
            "sales_rank": position + 1,
            "title": f"Product {asin}",
            "brand": None,
            "price": None if rng.random() < 0.1 else Decimal(rng.randint(100, 12000)) / 100,
            "currency": "EUR" if rng.random() < 0.1 else "USD",
            "upcs": [],
            "eans": [],
        }
    return products, amazon


async def write_products(
    database: Database, run_id: uuid.UUID, products: dict[str, dict[str, Any]]
) -> None:
    """The run's Amazon products (rows of `run_products` without `run_id`)."""
    if products:
        async with database.transaction() as session:
            rows = [{"run_id": run_id, **product} for product in products.values()]
            await session.execute(RunProduct.__table__.insert(), rows)
