"""Benchmark: a run's results at scale — a page of its sellers, and two runs compared.

What it measures
----------------
On a fresh database (an SQLite file, or a PostgreSQL database created on `--pg-url` and
dropped afterwards), through the service functions the API calls:

* **sellers page**: a run of `--listings` listings (default 150,000; 20 per product,
  sellers drawn from a skewed pool of listings / 5 names, so a few sellers list much and
  most list little) is written as the eBay checkpoints write it (listings plus the
  sellers' figures, `app.runs.sellers.record`), then a page of 50 sellers is read
  `--repeat` times: the first page, one in the middle, and the first page by lowest
  price — while the run is unfinished (ranks numbered per request from `run_sellers`) and
  once it is finished (`sellers.finish` stored ranks, median prices and median estimated
  margins; its time is reported). Next to it, the peer: the same first page computed the
  way it was before figures were kept, by aggregating the run's listings on every request.
* **listings page**: `GET /collection/runs/{id}/listings`' work (each listing with its
  product's Amazon price and its estimated margin, `app.runs.listings`): the first page,
  a page from the middle of the run (keyset: the cursor of the listing there), and the
  first page of the busiest seller's listings (`?seller=`).
* **comparison**: two runs of `--compare-listings` listings each (default 50,000; the
  second is the first with a fifth of its listings dropped, a third re-priced and a tenth
  taken over by new sellers), and the time of `GET /collection/runs/{id}/changes`'
  work: the first page of each of its four sections and the summary counts.
* **digest**: `GET /collection/runs/{id}/digest`'s work on the same two runs (the first
  marked completed, so it is the second's default comparison), with 100 watched sellers
  and the default preferences (top 10): while the second run is unfinished (ranked once,
  whole) and once finished (index probes only).

Times are wall clock, median and slowest of the repeats, in this process (the API's own
per-request overhead is not included: `bench/` has no HTTP client here). CPU is this
process's CPU per operation: on SQLite it includes the database's work, on PostgreSQL
not (the server is another process). Goals (issue 16): a page under 50 ms at any run
size; a comparison of two 50,000-listing runs under 1 s.

Usage (from the repository root)::

    .venv/bin/python bench/run_results.py
    .venv/bin/python bench/run_results.py --db sqlite --listings 30000 --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (
    DEFAULT_PG_URL,
    bench_settings,
    measure_each_database,
    timed,
)

PAGE = 50
LISTINGS_PER_PRODUCT = 20
PRODUCTS_PER_TRANSACTION = 50


def make_products(listings: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """`listings` listings, 20 per product, sellers from a skewed pool of listings / 5;
    half ship free, a third at a price, the rest unknown."""
    rng = random.Random(seed)
    shipping_rng = random.Random(seed + 1_000)  # its own: the other draws stay as they were
    pool = max(1, listings // 5)
    products: dict[str, list[dict[str, Any]]] = {}
    for p in range(listings // LISTINGS_PER_PRODUCT):
        asin = f"B{p:09d}"
        products[asin] = [
            {
                "asin": asin,
                "item_id": f"v1|{p}|{i}",
                "title": "A listing of a product",
                "price": Decimal(rng.randint(100, 99999)) / 100,
                "currency": "USD",
                "seller_username": f"seller-{int(pool * rng.random() ** 3)}",
                "seller_feedback_score": rng.randint(0, 50000),
                "seller_feedback_percentage": Decimal("99.2"),
                "url": f"https://www.ebay.com/itm/{p}{i}",
                **_shipping(shipping_rng),
            }
            for i in range(LISTINGS_PER_PRODUCT)
        ]
    return products


def _shipping(rng: random.Random) -> dict[str, Any]:
    draw = rng.random()
    if draw < 0.2:
        return {"shipping": None, "shipping_currency": None}
    cost = Decimal(0) if draw < 0.7 else Decimal(rng.randint(299, 999)) / 100
    return {"shipping": cost, "shipping_currency": "USD"}


def later(products: dict[str, list[dict[str, Any]]], seed: int) -> dict[str, list[dict[str, Any]]]:
    """The same market later: a fifth dropped, a third re-priced, a tenth new sellers."""
    rng = random.Random(seed)
    result: dict[str, list[dict[str, Any]]] = {}
    for asin, listings in products.items():
        kept = []
        for listing in listings:
            if rng.random() < 0.2:
                continue
            listing = dict(listing)
            if rng.random() < 0.33:
                listing["price"] = Decimal(rng.randint(100, 99999)) / 100
            if rng.random() < 0.1:
                listing["seller_username"] = f"newcomer-{rng.randint(0, 2000)}"
            kept.append(listing)
        result[asin] = kept
    return result


async def seed_run(database: Any, org_id: uuid.UUID, products: dict[str, Any]) -> Any:
    from app.runs import sellers
    from app.tables import CollectionRun, RunListing, RunProduct, RunStatus

    async with database.transaction() as session:
        run = CollectionRun(
            org_id=org_id,
            name="bench",
            status=RunStatus.CANCELLED,
            category_ids=["1"],
            products_per_category=len(products),
            listings_per_product=LISTINGS_PER_PRODUCT,
        )
        session.add(run)
        await session.flush()
        run_id = run.id
    items = list(products.values())
    amazon = random.Random(len(items))
    for start in range(0, len(items), PRODUCTS_PER_TRANSACTION):
        async with database.transaction() as session:
            batch = items[start : start + PRODUCTS_PER_TRANSACTION]
            await session.execute(
                RunProduct.__table__.insert(),
                [
                    {
                        "run_id": run_id,
                        "asin": listings[0]["asin"],
                        "category_id": "1",
                        "category_position": 0,
                        "sales_rank": start + offset + 1,
                        "title": "A product",
                        "price": Decimal(amazon.randint(100, 99999)) / 100,
                        "currency": "USD",
                        "upcs": [],
                        "eans": [],
                    }
                    for offset, listings in enumerate(batch)
                    if listings
                ],
            )
            for listings in batch:
                rows = [{"run_id": run_id, **listing} for listing in listings]
                await session.execute(RunListing.__table__.insert(), rows)
                await sellers.record(session, run_id, rows)
    async with database.read() as session:
        return await session.get_one(CollectionRun, run_id)


def old_first_page(run_id: uuid.UUID) -> Any:
    """The page as it was computed before the figures were kept: from the listings."""
    from app.tables import RunListing

    products = sa.func.count(sa.distinct(RunListing.asin))
    listings = sa.func.count()
    return (
        sa.select(
            RunListing.seller_username,
            products,
            listings,
            sa.func.min(RunListing.price),
            sa.func.max(RunListing.price),
            sa.func.max(RunListing.seller_feedback_score),
        )
        .where(RunListing.run_id == run_id)
        .group_by(RunListing.seller_username)
        .order_by(products.desc(), listings.desc(), RunListing.seller_username)
        .limit(PAGE)
    )


async def measure(db: str, url: str, data_dir: Path, args: argparse.Namespace) -> list[list[str]]:
    from app.core.database import SYSTEM, Database, acting_as
    from app.core.pagination import encode_key
    from app.migrate import upgrade
    from app.runs import changes, listings, results, sellers
    from app.tables import CollectionRun, Organization, RunSeller, RunStatus
    from app.watchlists import digest as digests
    from app.watchlists.tables import WatchedSeller

    settings = bench_settings(url, data_dir)
    await asyncio.to_thread(upgrade, settings)  # Alembic runs its own event loop
    database = Database.from_settings(settings)
    rows: list[list[str]] = []

    def row(what: str, figures: tuple[float, float, float], goal: str) -> None:
        p50, worst, cpu = figures
        rows.append([db, what, f"{p50:.1f}", f"{worst:.1f}", f"{cpu:.1f}", goal])

    try:
        with acting_as(SYSTEM):
            org_id = uuid.uuid4()
            async with database.transaction() as session:
                session.add(Organization(id=org_id, name="bench"))
            started = time.perf_counter()
            run = await seed_run(database, org_id, make_products(args.listings, 1))
            print(
                f"{db}: wrote {args.listings:,} listings in {time.perf_counter() - started:.1f} s",
                file=sys.stderr,
            )
            async with database.read() as session:
                total = await results.count_sellers(session, run)

            async def page(offset: int, sort: str) -> None:
                async with database.read() as session:
                    await results.rank_sellers(
                        session,
                        run,
                        offset=offset,
                        limit=PAGE,
                        compared_with=None,
                        sort=sort,  # type: ignore[arg-type]
                    )

            async def old() -> None:
                async with database.read() as session:
                    (await session.execute(old_first_page(run.id))).all()

            label = f"{args.listings:,} listings, {total:,} sellers"
            for finished in (False, True):
                if finished:
                    wall, cpu = time.perf_counter(), time.process_time()
                    async with database.transaction() as session:
                        await sellers.finish(session, run.id)
                    rows.append(
                        [
                            db,
                            f"finishing the run: ranks, medians, median margins ({label})",
                            f"{(time.perf_counter() - wall) * 1000:.0f}",
                            "",
                            f"{(time.process_time() - cpu) * 1000:.0f}",
                            "once per run",
                        ]
                    )
                state = "finished" if finished else "unfinished"
                row(
                    f"first page, {state} ({label})",
                    await timed(args.repeat, lambda: page(0, "rank")),
                    "< 50 ms",
                )
                row(
                    f"middle page, {state}",
                    await timed(args.repeat, lambda: page(total // 2, "rank")),
                    "< 50 ms",
                )
                row(
                    f"first page by price, {state}",
                    await timed(args.repeat, lambda: page(0, "price")),
                    "< 50 ms",
                )
                if finished:
                    row(
                        "first page by median margin, finished",
                        await timed(args.repeat, lambda: page(0, "margin")),
                        "< 50 ms",
                    )
            row("peer: first page from the listings (before)", await timed(args.repeat, old), "")

            async with database.read() as session:
                busiest = (
                    await results.rank_sellers(session, run, offset=0, limit=1, compared_with=None)
                )[0][0]
            middle_asin = f"B{args.listings // LISTINGS_PER_PRODUCT // 2:09d}"

            async def listings_page(seller: str | None, cursor: str | None) -> None:
                async with database.read() as session:
                    await listings.list_listings(
                        session, run, seller=seller, cursor=cursor, limit=PAGE
                    )

            row(
                f"listings with margins: first page ({args.listings:,} listings)",
                await timed(args.repeat, lambda: listings_page(None, None)),
                "< 50 ms",
            )
            row(
                "listings with margins: a page in the middle (keyset)",
                await timed(args.repeat, lambda: listings_page(None, encode_key(middle_asin, ""))),
                "< 50 ms",
            )
            row(
                f"listings with margins: the busiest seller's ({busiest.listings:,} listings)",
                await timed(args.repeat, lambda: listings_page(busiest.username, None)),
                "< 50 ms",
            )

            first_products = make_products(args.compare_listings, 2)
            first = await seed_run(database, org_id, first_products)
            second = await seed_run(database, org_id, later(first_products, 3))

            async def compare() -> None:
                async with database.read() as session:
                    await changes.compare(session, second, first, limit=PAGE)

            row(
                f"comparison: 4 sections + summary ({args.compare_listings:,} listings each)",
                await timed(max(3, args.repeat // 4), compare),
                "< 1000 ms",
            )

            async with database.transaction() as session:
                await sellers.finish(session, first.id)
                await session.execute(
                    sa.update(CollectionRun)
                    .where(CollectionRun.id == first.id)
                    .values(status=RunStatus.COMPLETED)
                )
                names = list(
                    await session.scalars(
                        sa.select(RunSeller.username).where(RunSeller.run_id == second.id)
                    )
                )
                session.add_all(
                    WatchedSeller(org_id=org_id, username=name)
                    for name in random.Random(4).sample(names, min(100, len(names)))
                )

            async def digest() -> None:
                async with database.read() as session:
                    await digests.run_digest(session, second, user_id=uuid.uuid4())

            for finished in (False, True):
                if finished:
                    async with database.transaction() as session:
                        await sellers.finish(session, second.id)
                state = "finished" if finished else "unfinished"
                row(
                    f"digest, {state}: top 10 + 100 watched sellers",
                    await timed(max(3, args.repeat // 4), digest),
                    "< comparison",
                )
    finally:
        await database.dispose()
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--db", choices=["both", "sqlite", "postgresql"], default="both")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="a PostgreSQL server to use")
    parser.add_argument("--listings", type=int, default=150_000, help="listings of the run")
    parser.add_argument("--compare-listings", type=int, default=50_000, help="per compared run")
    parser.add_argument("--repeat", type=int, default=20, help="reads per measurement")
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args()
    return measure_each_database(
        args.db, args.pg_url, "bench-results", lambda db, url, tmp: measure(db, url, tmp, args)
    )


if __name__ == "__main__":
    raise SystemExit(main())
