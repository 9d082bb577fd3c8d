"""A run's digest: for random pairs of runs, random watchlists and preferences, every
section is exactly the run's changes (GET /changes) filtered by the watchlist and the
caller's preferences, whether the run's ranks are stored (finished) or not; and a run with
nothing to compare with."""

from __future__ import annotations

import random
import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from app.core.clock import utcnow
from app.core.database import Database
from app.tables import CollectionRun
from tests.helpers.actors import Actor, Actors
from tests.helpers.listings import complete, later_products, random_products, write_listings

CATEGORIES = ["1", "2"]


async def _run(client: httpx.AsyncClient, admin: Actor) -> uuid.UUID:
    """A run of CATEGORIES, cancelled (its rows are written by the test)."""
    created = await client.post(
        "/collection/runs", json={"category_ids": CATEGORIES}, headers=admin.headers
    )
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    cancelled = await client.post(f"/collection/runs/{run_id}/cancel", headers=admin.headers)
    assert cancelled.status_code == 200, cancelled.text
    return uuid.UUID(run_id)


async def _changes(
    client: httpx.AsyncClient, admin: Actor, run_id: uuid.UUID
) -> dict[str, list[dict[str, Any]]]:
    """Every item of the seller sections of the run's changes (default comparison)."""
    sections: dict[str, list[dict[str, Any]]] = {}
    for name in ("new_sellers", "gone_sellers", "movers"):
        params: dict[str, Any] = {"section": name, "limit": 200}
        response = await client.get(
            f"/collection/runs/{run_id}/changes", params=params, headers=admin.headers
        )
        assert response.status_code == 200, response.text
        page = response.json()[name]
        assert page["next_cursor"] is None
        sections[name] = page["items"]
    return sections


@pytest.mark.parametrize("stored_ranks", [True, False], ids=["finished", "live"])
@pytest.mark.parametrize("seed", range(8))
async def test_digest_is_the_changes_filtered_by_watchlist_and_preferences(
    client: httpx.AsyncClient, actors: Actors, database: Database, seed: int, stored_ranks: bool
) -> None:
    admin = await actors.admin()
    rng = random.Random(seed)
    before_products = random_products(rng)
    after_products = later_products(before_products, rng)
    before, after = await _run(client, admin), await _run(client, admin)
    await write_listings(database, before, before_products)
    await write_listings(database, after, after_products)
    await complete(database, before)
    if stored_ranks:
        await complete(database, after)

    names = sorted(
        {row["seller_username"] for rows in before_products.values() for row in rows}
        | {row["seller_username"] for rows in after_products.values() for row in rows}
    )
    watched = set(rng.sample(names, rng.randint(0, len(names)))) | {"never-seen"}
    for name in watched:
        starred = await client.put(f"/collection/watchlist/{name}", headers=admin.headers)
        assert starred.status_code == 201, starred.text
    top_n, threshold = rng.randint(1, 12), rng.randint(1, 4)
    patched = await client.patch(
        "/me/digest", json={"top_n": top_n, "rank_threshold": threshold}, headers=admin.headers
    )
    assert patched.status_code == 200, patched.text

    response = await client.get(f"/collection/runs/{after}/digest", headers=admin.headers)
    assert response.status_code == 200, response.text
    digest = response.json()
    assert digest["compared_with"]["id"] == str(before)
    assert digest["note"] is None
    assert digest["preferences"]["top_n"] == top_n
    assert digest["preferences"]["rank_threshold"] == threshold

    changes = await _changes(client, admin, after)
    assert digest["new_in_top"] == [s for s in changes["new_sellers"] if s["rank"] <= top_n]
    assert digest["watched_appeared"] == [
        s for s in changes["new_sellers"] if s["username"] in watched
    ]
    assert digest["watched_vanished"] == [
        s for s in changes["gone_sellers"] if s["username"] in watched
    ]
    assert digest["watched_moved"] == [
        s
        for s in changes["movers"]
        if s["username"] in watched and abs(s["rank_change"]) >= threshold
    ]


async def test_a_first_run_has_an_empty_digest_that_says_why(
    client: httpx.AsyncClient, actors: Actors, database: Database
) -> None:
    admin = await actors.admin()
    run = await _run(client, admin)
    rng = random.Random(1)
    await write_listings(database, run, random_products(rng))
    await complete(database, run)
    response = await client.get(f"/collection/runs/{run}/digest", headers=admin.headers)
    assert response.status_code == 200, response.text
    digest = response.json()
    assert digest["compared_with"] is None
    assert "no earlier completed run of the same categories" in digest["note"]
    assert digest["preferences"] == {
        "subscribed": False,
        "top_n": 10,
        "rank_threshold": 5,
        "updated_at": None,
    }
    for section in ("new_in_top", "watched_appeared", "watched_vanished", "watched_moved"):
        assert digest[section] == []


async def test_the_digest_of_a_purged_run_is_gone(
    client: httpx.AsyncClient, actors: Actors, database: Database
) -> None:
    admin = await actors.admin()
    run = await _run(client, admin)
    async with database.transaction() as session:
        await session.execute(
            sa.update(CollectionRun)
            .where(CollectionRun.id == run)
            .values(results_purged_at=utcnow())
        )
    response = await client.get(f"/collection/runs/{run}/digest", headers=admin.headers)
    assert response.status_code == 410
    assert "retention policy" in response.json()["detail"]
