"""What changed between two runs: for random pairs of runs, every section is exactly the
set differences and deltas of the two runs' results; the default run to compare with, the
runs that cannot be compared, the CSV, and another organization's run."""

from __future__ import annotations

import csv
import io
import itertools
import random
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest

from app.core.database import Database
from tests.helpers.actors import Actor, Actors
from tests.helpers.listings import Products, later_products, random_products, write_listings
from tests.helpers.runs import finished_run


def _figures(products: Products) -> dict[str, tuple[int, int, int]]:
    """Each seller's (rank, products, listings), computed from the listings."""
    by_seller: dict[str, list[dict[str, Any]]] = {}
    for listings in products.values():
        for listing in listings:
            by_seller.setdefault(listing["seller_username"], []).append(listing)
    counted = sorted(
        ((name, len({row["asin"] for row in rows}), len(rows)) for name, rows in by_seller.items()),
        key=lambda row: (-row[1], -row[2], row[0]),
    )
    return {name: (rank, p, n) for rank, (name, p, n) in enumerate(counted, start=1)}


def _prices(products: Products) -> dict[tuple[str, str], dict[str, Any]]:
    return {(row["asin"], row["item_id"]): row for rows in products.values() for row in rows}


async def _run(client: httpx.AsyncClient, admin: Actor, category_ids: list[str]) -> uuid.UUID:
    created = await client.post(
        "/collection/runs", json={"category_ids": category_ids}, headers=admin.headers
    )
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    # cancelled, so the organization may create the next (its rows are written directly)
    cancelled = await client.post(f"/collection/runs/{run_id}/cancel", headers=admin.headers)
    assert cancelled.status_code == 200, cancelled.text
    return uuid.UUID(run_id)


async def _section(
    client: httpx.AsyncClient, admin: Actor, run_id: uuid.UUID, against: uuid.UUID, name: str
) -> list[dict[str, Any]]:
    """Every item of a section: the first page from the full answer, then `section=` pages."""
    params: dict[str, Any] = {"against": str(against), "limit": 3}
    first = await client.get(
        f"/collection/runs/{run_id}/changes", params=params, headers=admin.headers
    )
    assert first.status_code == 200, first.text
    page = first.json()[name]
    items = list(page["items"])
    while page["next_cursor"]:
        response = await client.get(
            f"/collection/runs/{run_id}/changes",
            params={**params, "section": name, "cursor": page["next_cursor"]},
            headers=admin.headers,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["summary"] is None
        assert [
            s for s in ("new_sellers", "gone_sellers", "movers", "price_changes") if body[s]
        ] == [name]
        page = body[name]
        items += page["items"]
    return items


@pytest.mark.parametrize("seed", range(10))
async def test_changes_are_the_set_differences_and_deltas_of_the_two_runs(
    client: httpx.AsyncClient, actors: Actors, database: Database, seed: int
) -> None:
    admin = await actors.admin()
    rng = random.Random(seed)
    before_products = random_products(rng)
    after_products = later_products(before_products, rng)
    before, after = await _run(client, admin, ["1", "2"]), await _run(client, admin, ["2", "1"])
    await write_listings(database, before, before_products)
    await write_listings(database, after, after_products)
    old, new = _figures(before_products), _figures(after_products)

    new_sellers = await _section(client, admin, after, before, "new_sellers")
    assert [
        (s["username"], s["rank"], s["products"], s["listings"]) for s in new_sellers
    ] == sorted(((name, *new[name]) for name in new.keys() - old.keys()), key=lambda row: row[1])
    assert all(s["against_rank"] is None and s["rank_change"] is None for s in new_sellers)
    gone = await _section(client, admin, after, before, "gone_sellers")
    assert [(s["username"], s["against_rank"], s["against_products"]) for s in gone] == sorted(
        ((name, *old[name][:2]) for name in old.keys() - new.keys()), key=lambda row: row[1]
    )
    assert all(s["rank"] is None for s in gone)

    movers = await _section(client, admin, after, before, "movers")
    expected_movers = sorted(
        (
            (name, new[name][0], old[name][0] - new[name][0], new[name][1] - old[name][1])
            for name in new.keys() & old.keys()
            if new[name][:2] != old[name][:2]
        ),
        key=lambda row: (-abs(row[2]), -abs(row[3]), row[1]),
    )
    assert [
        (s["username"], s["rank"], s["rank_change"], s["products_change"]) for s in movers
    ] == expected_movers

    changes = await _section(client, admin, after, before, "price_changes")
    was, now = _prices(before_products), _prices(after_products)
    expected_prices = {
        (key[0], key[1], was[key]["price"], now[key]["price"], now[key]["seller_username"])
        for key in was.keys() & now.keys()
        if None not in (was[key]["price"], now[key]["price"])
        and was[key]["price"] != now[key]["price"]
    }
    got = [
        (
            c["asin"],
            c["item_id"],
            Decimal(c["old_price"]),
            Decimal(c["new_price"]),
            c["username"],
        )
        for c in changes
    ]
    assert len(got) == len(expected_prices)
    assert set(got) == expected_prices
    relative = [abs(new - old) / old for _, _, old, new, _ in got]
    assert all(a >= b - Decimal("1e-9") for a, b in itertools.pairwise(relative))
    assert all(
        Decimal(c["change"]) == Decimal(c["new_price"]) - Decimal(c["old_price"]) for c in changes
    )

    summary = (
        await client.get(
            f"/collection/runs/{after}/changes",
            params={"against": str(before)},
            headers=admin.headers,
        )
    ).json()["summary"]
    unchanged = sum(1 for name in new.keys() & old.keys() if new[name][:2] == old[name][:2])
    assert summary == {
        "new_sellers": len(new_sellers),
        "gone_sellers": len(gone),
        "movers": len(movers),
        "unchanged_sellers": unchanged,
        "price_changes": len(changes),
    }

    exported = await client.get(
        f"/collection/runs/{after}/export.csv",
        params={"kind": "changes", "against": str(before)},
        headers=admin.headers,
    )
    assert exported.status_code == 200, exported.text
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [row["section"] for row in rows] == (
        ["new_sellers"] * len(new_sellers)
        + ["gone_sellers"] * len(gone)
        + ["movers"] * len(movers)
        + ["price_changes"] * len(changes)
    )
    assert [row["seller_username"] for row in rows[: len(new_sellers)]] == [
        s["username"] for s in new_sellers
    ]


async def test_default_is_the_previous_completed_run_of_the_preset(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    admin = await actors.admin()
    preset = await client.post(
        "/collection/presets",
        json={"name": "Tools", "category_ids": ["172282"]},
        headers=admin.headers,
    )
    body = {"preset_id": preset.json()["id"], "products_per_category": 5}
    first = await finished_run(client, admin, body)
    lonely = await client.get(f"/collection/runs/{first}/changes", headers=admin.headers)
    assert lonely.status_code == 409
    assert "no earlier completed run of the same preset" in lonely.json()["detail"]

    second = await finished_run(client, admin, body)
    response = await client.get(f"/collection/runs/{second}/changes", headers=admin.headers)
    assert response.status_code == 200, response.text
    changes = response.json()
    assert changes["against_run_id"] == first
    assert changes["against_created_at"].endswith("Z") or "+00:00" in changes["against_created_at"]
    assert sum(changes["summary"].values()) > 0

    other_categories = await finished_run(
        client, admin, {"category_ids": ["541966"], "products_per_category": 5}
    )
    differ = await client.get(
        f"/collection/runs/{second}/changes",
        params={"against": other_categories},
        headers=admin.headers,
    )
    assert differ.status_code == 409
    assert "different categories" in differ.json()["detail"]
    itself = await client.get(
        f"/collection/runs/{second}/changes", params={"against": second}, headers=admin.headers
    )
    assert itself.status_code == 409
    loose_cursor = await client.get(
        f"/collection/runs/{second}/changes",
        params={"cursor": "eyJvZmZzZXQiOjN9"},
        headers=admin.headers,
    )
    assert loose_cursor.status_code == 400
    assert "section=" in loose_cursor.json()["detail"]
    bad_section = await client.get(
        f"/collection/runs/{second}/changes", params={"section": "prices"}, headers=admin.headers
    )
    assert bad_section.status_code == 422
    stray = await client.get(
        f"/collection/runs/{second}/export.csv",
        params={"kind": "sellers", "against": first},
        headers=admin.headers,
    )
    assert stray.status_code == 400
    assert "kind=changes" in stray.json()["detail"]


async def test_another_organizations_run_is_not_found_as_either_side(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    ours, theirs = await actors.admin("Ours"), await actors.admin("Theirs")
    our_run = await _run(client, ours, ["1"])
    their_run = await _run(client, theirs, ["1"])
    for run_id, against in ((our_run, their_run), (their_run, our_run)):
        response = await client.get(
            f"/collection/runs/{run_id}/changes",
            params={"against": str(against)},
            headers=ours.headers,
        )
        assert response.status_code == 404, response.text
    exported = await client.get(
        f"/collection/runs/{our_run}/export.csv",
        params={"kind": "changes", "against": str(their_run)},
        headers=ours.headers,
    )
    assert exported.status_code == 404
