"""Benchmark: what PostgreSQL row-level security adds to the queries of the hot paths.

Every tenant table carries policies (migration 0009). The results of runs (run_listings,
run_products, ...) have no organization of their own: a row is visible when its run is one
of the acting organization's. This measures the queries a results page, an export and the
lists make, once as the service's own role (no policies apply) and once as a request does
(role `collection_app`, `app.user_id` and `app.org_id` set in the transaction), alternating
the two, on a fresh migrated database holding `--orgs` organizations of `--runs-per-org`
runs of `--listings` listings each, plus `--old-runs` more runs without results (a
long-lived installation's history). Then it prints the plan of the ranking query as a
request runs it.

PostgreSQL only (SQLite has no row-level security): skipped with a note when the server
is unreachable. Nothing is asserted. Usage (from the
repository root)::

    .venv/bin/python bench/row_level_security.py
    .venv/bin/python bench/row_level_security.py --old-runs 100000 --repeat 101
"""

# ruff: noqa: S608  (the SQL here is composed of the script's own constants and numbers)
from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg
from benchlib import (
    DEFAULT_PG_URL,
    bench_settings,
    format_table,
    postgres_database,
    postgres_unreachable,
)
from sqlalchemy.engine import make_url

ORG = "md5('o1')::uuid"
RUN = "md5('r1-1')::uuid"
QUERIES = {
    "seller ranking of a run (GROUP BY over its listings)": f"""
        SELECT seller_username, count(DISTINCT asin), count(*), min(price), max(price)
        FROM run_listings WHERE run_id = {RUN}
        GROUP BY seller_username ORDER BY 2 DESC, 3 DESC, 1 LIMIT 50""",
    "listings export batch (500 rows by key)": f"""
        SELECT * FROM run_listings WHERE run_id = {RUN} ORDER BY asin, item_id LIMIT 500""",
    "every listing of a run": f"SELECT * FROM run_listings WHERE run_id = {RUN}",
    "products of a run, first 100 by rank": f"""
        SELECT * FROM run_products WHERE run_id = {RUN}
        ORDER BY category_position, sales_rank LIMIT 100""",
    "runs of the organization, first page": f"""
        SELECT * FROM collection_runs WHERE org_id = {ORG}
        ORDER BY created_at DESC, id DESC LIMIT 50""",
}
ACT_AS_REQUEST = """
    SELECT set_config('role', 'collection_app', true), set_config('app.user_id', md5('u1'), true),
           set_config('app.org_id', md5('o1'), true), set_config('app.system', 'off', true)
"""


def seed(orgs: int, runs_per_org: int, listings: int, old_runs: int) -> list[str]:
    """Statements filling the database (organization 1's admin is user 1)."""
    products = max(1, listings // 5)
    run_columns = """(id, org_id, name, status, trigger, category_ids, products_per_category,
        listings_per_product, categories_total, categories_done, products_found,
        products_searched, listings_found, sellers_found, created_at, updated_at)"""
    return [
        f"""INSERT INTO users (id, email, created_at) SELECT md5('u' || g)::uuid,
            'u' || g || '@example.com', now() FROM generate_series(1, {orgs}) g""",
        f"""INSERT INTO organizations (id, name, created_at)
            SELECT md5('o' || g)::uuid, 'Org ' || g, now() FROM generate_series(1, {orgs}) g""",
        f"""INSERT INTO memberships (org_id, user_id, role, created_at)
            SELECT md5('o' || g)::uuid, md5('u' || g)::uuid, 'admin', now()
            FROM generate_series(1, {orgs}) g""",
        f"""INSERT INTO collection_runs {run_columns}
            SELECT md5('r' || o || '-' || r)::uuid, md5('o' || o)::uuid, 'run', 'completed',
                'manual', '["1"]'::jsonb, 100, 5, 10, 10, {products}, {products}, {listings},
                800, now() - (r || ' days')::interval, now()
            FROM generate_series(1, {orgs}) o, generate_series(1, {runs_per_org}) r""",
        f"""INSERT INTO run_products (run_id, asin, category_id, category_position, sales_rank,
                title, currency, upcs, eans, listings_found)
            SELECT id, 'B' || lpad(p::text, 9, '0'), (p % 10)::text, p % 10, p,
                'Product ' || p, 'USD', '[]'::jsonb, '[]'::jsonb, 5
            FROM collection_runs, generate_series(1, {products}) p""",
        f"""INSERT INTO run_listings (run_id, asin, item_id, title, price, currency,
                seller_username, seller_feedback_score, seller_feedback_percentage, url)
            SELECT id, 'B' || lpad(((l - 1) / 5 + 1)::text, 9, '0'), 'v1|' || l || '|0',
                'Listing ' || l, (l % 97) + 0.99, 'USD', 'seller' || (l * 7919 % 800),
                l % 1000, 99.0, 'https://www.ebay.com/itm/' || l
            FROM collection_runs, generate_series(1, {listings}) l""",
        f"""INSERT INTO collection_runs {run_columns}
            SELECT gen_random_uuid(), md5('o' || (2 + g % {max(1, orgs - 1)}))::uuid,
                'old run', 'completed', 'manual', '["1"]'::jsonb, 100, 5, 10, 10, 0, 0, 0, 0,
                now() - (g || ' hours')::interval, now()
            FROM generate_series(1, {old_runs}) g""",
        "ANALYZE",
    ]


async def timed(connection: asyncpg.Connection, sql: str, *, as_request: bool) -> tuple[float, int]:
    """Milliseconds the query takes, and the rows it returns, in a transaction of its own."""
    async with connection.transaction():
        if as_request:
            await connection.execute(ACT_AS_REQUEST)
        start = time.perf_counter()
        rows = await connection.fetch(sql)
        return (time.perf_counter() - start) * 1000, len(rows)


async def measure(url: str, args: argparse.Namespace) -> None:
    target = make_url(url)
    connection = await asyncpg.connect(
        host=target.host, port=target.port or 5432, user=target.username,
        password=target.password, database=target.database,
    )  # fmt: skip
    try:
        for statement in seed(args.orgs, args.runs_per_org, args.listings, args.old_runs):
            await connection.execute(statement)
        table = []
        for name, sql in QUERIES.items():
            owner, request = [], []
            for _ in range(args.repeat):  # alternating, so load on the machine hits both
                took, owner_rows = await timed(connection, sql, as_request=False)
                owner.append(took)
                took, request_rows = await timed(connection, sql, as_request=True)
                request.append(took)
            assert owner_rows == request_rows, f"{name}: the policies hid rows of the org"
            mine, theirs = statistics.median(owner), statistics.median(request)
            table.append(
                [name, str(request_rows), f"{mine:.2f}", f"{theirs:.2f}", f"{theirs - mine:+.2f}"]
            )
        print(
            format_table(
                ["query", "rows", "own role ms", "as a request ms", "added ms"],
                table,
                text_columns=1,
            )
        )
        async with connection.transaction():
            await connection.execute(ACT_AS_REQUEST)
            plan = await connection.fetch(
                "EXPLAIN (ANALYZE, COSTS OFF) " + next(iter(QUERIES.values()))
            )
        print("\nThe ranking as a request runs it:\n")
        print("\n".join("    " + row[0] for row in plan))
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="a PostgreSQL server")
    parser.add_argument("--orgs", type=int, default=20)
    parser.add_argument("--runs-per-org", type=int, default=5)
    parser.add_argument("--listings", type=int, default=5000, help="listings of each run")
    parser.add_argument("--old-runs", type=int, default=20_000, help="runs without results")
    parser.add_argument("--repeat", type=int, default=41, help="measurements per query")
    args = parser.parse_args()
    server = make_url(args.pg_url)
    if reason := postgres_unreachable(server):
        # like the other benchmarks' PostgreSQL column: skipped with a note, not a failure
        where = server.render_as_string(hide_password=True)
        print(f"Skipped: row-level security is PostgreSQL's; {where} is unreachable ({reason}).")
        return
    from app import migrate

    with postgres_database(server, "bench_rls") as url, tempfile.TemporaryDirectory() as data:
        migrate.upgrade(bench_settings(url, Path(data)))
        print(
            f"{args.orgs} organizations x {args.runs_per_org} runs x {args.listings} listings, "
            f"{args.old_runs} more runs; median of {args.repeat}\n"
        )
        asyncio.run(measure(url, args))


if __name__ == "__main__":
    main()
