"""A run's results: sellers ranked and paginated, the CSV exports (RFC 4180 quoting, no
spreadsheet formulas), and the retention that purges old results in batches."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import sqlalchemy as sa

from app.core.clock import utcnow
from app.core.database import Database
from app.runs.results import purge_expired_results
from app.tables import CollectionRun
from tests.helpers.actors import Actor
from tests.helpers.runs import (
    create_run,
    finished,
    start,
    stored_listings,
    wait_for,
)

# --- results -----------------------------------------------------------------------------


async def _complete(
    client: httpx.AsyncClient, admin: Actor, categories: list[str], per_category: int = 5
) -> dict[str, Any]:
    run = await create_run(client, admin, categories, products_per_category=per_category)
    await start(client, admin, run["id"])
    done = await wait_for(client, admin, run["id"], finished)
    assert done["status"] == "completed", done
    return done


async def _all_sellers(
    client: httpx.AsyncClient, admin: Actor, run_id: str, limit: int = 7, **order: str
) -> list[dict[str, Any]]:
    sellers: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {
            "limit": limit,
            **order,
            **({"cursor": cursor} if cursor else {}),
        }
        page = (
            await client.get(
                f"/collection/runs/{run_id}/sellers", params=params, headers=admin.headers
            )
        ).json()
        sellers += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return sellers


async def test_sellers_are_ranked_and_paginated(
    client: httpx.AsyncClient, admin: Actor, database: Database
) -> None:
    run = await _complete(client, admin, ["172282", "541966", "1055398"], 10)
    sellers = await _all_sellers(client, admin, run["id"])
    assert len(sellers) == run["progress"]["sellers_found"]
    assert [s["rank"] for s in sellers] == list(range(1, len(sellers) + 1))
    keys = [(-s["products"], -s["listings"], s["username"]) for s in sellers]
    assert keys == sorted(keys)
    assert sellers[0]["products"] > sellers[len(sellers) // 2]["products"]  # long tail
    assert all(s["new_since_last_run"] is None for s in sellers)  # no earlier run

    # cross-check the top seller against the stored listings
    stored = await stored_listings(database, run["id"])
    top = sellers[0]
    mine = [(asin, item) for asin, item, seller in stored if seller == top["username"]]
    assert top["listings"] == len(mine)
    assert top["products"] == len({asin for asin, _ in mine})
    assert Decimal(top["min_price"]) <= Decimal(top["max_price"])


async def test_sellers_in_another_order_keep_their_rank(
    client: httpx.AsyncClient, admin: Actor
) -> None:
    run = await _complete(client, admin, ["172282", "541966"], 10)
    ranked = await _all_sellers(client, admin, run["id"], 200)
    rank_of = {s["username"]: s["rank"] for s in ranked}

    def price(seller: dict[str, Any]) -> Decimal:
        return Decimal(seller["min_price"])

    for sort, order, key in [
        ("seller", "asc", lambda s: (s["username"].lower(), s["rank"])),
        ("listings", "desc", lambda s: (-s["listings"], s["rank"])),
        ("price", "asc", lambda s: (price(s), s["rank"])),
        ("price", "desc", lambda s: (-price(s), s["rank"])),
        ("rank", "desc", lambda s: -s["rank"]),
    ]:
        # pages of 7: the order and each seller's rank hold across page boundaries
        sellers = await _all_sellers(client, admin, run["id"], sort=sort, order=order)
        assert sorted(sellers, key=key) == sellers, (sort, order)
        assert {s["username"]: s["rank"] for s in sellers} == rank_of, (sort, order)

    wrong = await client.get(
        f"/collection/runs/{run['id']}/sellers",
        params={"sort": "rating", "order": "up"},
        headers=admin.headers,
    )
    assert wrong.status_code == 422
    fields = {tuple(error["loc"]) for error in wrong.json()["detail"]}
    assert fields == {("query", "sort"), ("query", "order")}


async def test_sellers_csv_matches_the_api(client: httpx.AsyncClient, admin: Actor) -> None:
    run = await _complete(client, admin, ["172282", "541966"])
    response = await client.get(
        f"/collection/runs/{run['id']}/export.csv",
        params={"kind": "sellers"},
        headers=admin.headers,
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert f"run-{run['id']}-sellers.csv" in response.headers["content-disposition"]
    assert response.text.endswith("\r\n")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    api = await _all_sellers(client, admin, run["id"], 200)
    assert [(int(r["rank"]), r["seller_username"], int(r["products"])) for r in rows] == [
        (s["rank"], s["username"], s["products"]) for s in api
    ]


async def test_listings_csv_has_every_listing_with_rfc4180_quoting(
    client: httpx.AsyncClient, admin: Actor, database: Database
) -> None:
    run = await _complete(client, admin, ["172282", "541966"])
    response = await client.get(
        f"/collection/runs/{run['id']}/export.csv",
        params={"kind": "listings"},
        headers=admin.headers,
    )
    reader = csv.reader(io.StringIO(response.text, newline=""))
    header = next(reader)
    assert header[:3] == ["asin", "product_title", "brand"]
    rows = [dict(zip(header, row, strict=True)) for row in reader]
    assert len(rows) == run["progress"]["listings_found"]
    stored = await stored_listings(database, run["id"])
    assert {(r["asin"], r["item_id"], r["seller_username"]) for r in rows} == set(stored)


async def test_csv_quotes_commas_quotes_and_newlines(database: Database) -> None:
    from app.runs.results import csv_chunk

    chunk = csv_chunk([["a,b", 'say "hi"', "two\nlines", None, Decimal("1.50")]]).decode()
    assert chunk == '"a,b","say ""hi""","two\nlines",,1.50\r\n'


async def test_csv_cells_never_run_as_spreadsheet_formulas(database: Database) -> None:
    from app.runs.results import csv_chunk

    titles = ['=HYPERLINK("http://x.example","click")', "+1+cmd|' /C calc'!A0", "@SUM(1)", "-2"]
    chunk = csv_chunk([[*titles, Decimal("-1.50"), -3, "Gadget - Black"]]).decode()
    cells = next(csv.reader(io.StringIO(chunk)))
    assert cells[:4] == ["'" + title for title in titles]
    assert cells[4:] == ["-1.50", "-3", "Gadget - Black"]  # numbers and inner dashes untouched


async def test_bad_export_kind_is_422(client: httpx.AsyncClient, admin: Actor) -> None:
    run = await create_run(client, admin, ["1"])
    response = await client.get(
        f"/collection/runs/{run['id']}/export.csv", params={"kind": "all"}, headers=admin.headers
    )
    assert response.status_code == 422


async def test_retention_purges_results_in_batches(
    client: httpx.AsyncClient, admin: Actor, database: Database
) -> None:
    old = await _complete(client, admin, ["172282"])
    recent = await _complete(client, admin, ["541966"])
    async with database.transaction() as session:
        await session.execute(
            sa.update(CollectionRun)
            .where(CollectionRun.id == uuid.UUID(old["id"]))
            .values(finished_at=utcnow() - timedelta(days=100))
        )
    deleted = await purge_expired_results(
        database, now=utcnow(), retention=timedelta(days=90), batch_size=7
    )
    assert deleted > old["progress"]["listings_found"]
    assert await stored_listings(database, old["id"]) == []
    assert (
        len(await stored_listings(database, recent["id"])) == recent["progress"]["listings_found"]
    )
    gone = await client.get(f"/collection/runs/{old['id']}/sellers", headers=admin.headers)
    assert gone.status_code == 410
    assert "retention" in gone.json()["detail"]
    csv_gone = await client.get(f"/collection/runs/{old['id']}/export.csv", headers=admin.headers)
    assert csv_gone.status_code == 410
    detail = (await client.get(f"/collection/runs/{old['id']}", headers=admin.headers)).json()
    assert detail["results_purged_at"] is not None
    assert detail["progress"]["listings_found"] == old["progress"]["listings_found"]
    assert (
        await purge_expired_results(
            database, now=utcnow(), retention=timedelta(days=90), batch_size=7
        )
        == 0
    )
