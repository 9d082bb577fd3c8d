"""The seller directory is what the runs' results say: for random runs of two presets and a
category list (some failed or cancelled, recorded in any order, two at once), every row of
every scope, in every order, equals the figures computed from the runs' own seller pages;
trends across three runs; a run is recorded once; the pipeline records what it completes."""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.core.database import Database
from app.tables import RunStatus
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
from tests.helpers.listings import Products, later_products, random_products, write_listings
from tests.helpers.runs import finished_run

T0 = datetime(2026, 6, 1, tzinfo=UTC)
Figures = dict[str, tuple[int, int, int]]  # username -> (rank, products, listings)


@dataclass
class Recorded:
    """A completed run as its results say: its scope and its sellers' figures."""

    run_id: uuid.UUID
    scope: str
    preset_id: str | None
    created_at: datetime
    sellers: Figures


@dataclass
class Row:
    username: str
    first_seen_at: datetime
    last_seen_at: datetime
    runs_seen: int
    last_run_id: str
    last_preset_id: str | None
    rank: int
    products: int
    listings: int
    trend: str | None


def _scope_rows(runs: list[Recorded]) -> dict[str, Row]:
    """The directory of one scope, by the definitions of the README."""
    ordered = sorted(runs, key=lambda r: (r.created_at, str(r.run_id)))
    latest = ordered[-1]
    previous = ordered[-2] if len(ordered) > 1 else None
    rows: dict[str, Row] = {}
    for username in {name for run in ordered for name in run.sellers}:
        seen = [run for run in ordered if username in run.sellers]
        last = seen[-1]
        rank, products, n = last.sellers[username]
        if username in latest.sellers:
            if previous is None or username not in previous.sellers:
                trend: str | None = "new"
            else:
                before = previous.sellers[username][0]
                trend = "up" if rank < before else "down" if rank > before else "same"
        else:
            trend = "gone" if previous is not None and username in previous.sellers else None
        rows[username] = Row(
            username,
            seen[0].created_at,
            last.created_at,
            len(seen),
            str(last.run_id),
            last.preset_id,
            rank,
            products,
            n,
            trend,
        )
    return rows


def _expected(runs: list[Recorded]) -> tuple[dict[str, dict[str, Row]], dict[str, Row]]:
    """Each scope's rows, and the rows over all runs (each from its latest run's scope)."""
    scopes = {
        scope: _scope_rows([r for r in runs if r.scope == scope])
        for scope in {r.scope for r in runs}
    }
    everything: dict[str, Row] = {}
    for username in {name for rows in scopes.values() for name in rows}:
        mine = [rows[username] for rows in scopes.values() if username in rows]
        latest = max(mine, key=lambda row: (row.last_seen_at, row.last_run_id))
        everything[username] = Row(
            username,
            min(row.first_seen_at for row in mine),
            latest.last_seen_at,
            sum(row.runs_seen for row in mine),
            latest.last_run_id,
            latest.last_preset_id,
            latest.rank,
            latest.products,
            latest.listings,
            latest.trend,
        )
    return scopes, everything


# Each order, ascending, most significant first; descending is the exact reverse.
ORDERS: dict[str, list[tuple[str, bool]]] = {
    "last_seen": [("last_seen_at", True), ("rank", False), ("username", False)],
    "first_seen": [("first_seen_at", True), ("rank", False), ("username", False)],
    "runs_seen": [("runs_seen", True), ("rank", False), ("username", False)],
    "products": [("products", True), ("rank", False), ("username", False)],
    "rank": [("rank", True), ("last_seen_at", False), ("username", True)],
    "username": [("username", True)],
}
DEFAULT_DESCENDING = {"last_seen", "first_seen", "runs_seen", "products"}


def _ordered(rows: list[Row], sort: str, descending: bool) -> list[str]:
    ordered = list(rows)
    for field, ascending in reversed(ORDERS[sort]):  # stable sorts, least significant first
        ordered.sort(key=lambda row: getattr(row, field), reverse=not ascending)
    names = [row.username for row in ordered]
    return names[::-1] if descending else names


def _row(item: dict[str, Any]) -> Row:
    return Row(
        item["username"],
        datetime.fromisoformat(item["first_seen_at"]),
        datetime.fromisoformat(item["last_seen_at"]),
        item["runs_seen"],
        item["last_run_id"],
        item["last_preset_id"],
        item["rank"],
        item["products"],
        item["listings"],
        item["trend"],
    )


async def _results(client: httpx.AsyncClient, admin: Actor, run_id: uuid.UUID) -> Figures:
    """The run's sellers as its own (paged) results say."""
    figures: Figures = {}
    params: dict[str, Any] = {"limit": 200}
    while True:
        page = (
            await client.get(
                f"/collection/runs/{run_id}/sellers", params=params, headers=admin.headers
            )
        ).json()
        figures |= {s["username"]: (s["rank"], s["products"], s["listings"]) for s in page["items"]}
        if page["next_cursor"] is None:
            return figures
        params["cursor"] = page["next_cursor"]


async def _preset(client: httpx.AsyncClient, admin: Actor, name: str, categories: list[str]) -> str:
    response = await client.post(
        "/collection/presets",
        json={"name": name, "category_ids": categories},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.mark.parametrize("seed", range(8))
async def test_directory_rows_are_what_the_runs_results_say(
    client: httpx.AsyncClient, actors: Actors, database: Database, seed: int
) -> None:
    rng = random.Random(seed)
    admin = await actors.admin()
    presets = {
        "A": await _preset(client, admin, "A", ["1"]),
        "B": await _preset(client, admin, "B", ["2"]),
    }
    market: dict[str, Products] = {}
    made: list[tuple[uuid.UUID, str, datetime, RunStatus]] = []
    for i in range(rng.randint(4, 8)):
        scope = rng.choice(["A", "B", "list"])
        market[scope] = (
            later_products(market[scope], rng) if scope in market else random_products(rng)
        )
        run_id = await new_run(client, admin, preset_id=presets.get(scope), categories=["3", "4"])
        created_at = T0 + timedelta(hours=i)
        await set_created_at(database, run_id, created_at)
        await write_products(database, run_id, market[scope])
        await write_listings(database, run_id, market[scope])
        status = rng.choices(
            [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED], [8, 1, 1]
        )[0]
        made.append((run_id, scope, created_at, status))
    if seed % 2:  # recorded in another order than created: the same directory
        rng.shuffle(made)
    if seed % 4 == 3 and len(made) > 1:  # the last two at once
        *first, (a, *_, status_a), (b, *_, status_b) = made
        for run_id, *_, status in first:
            await complete(database, run_id, status=status)
        await asyncio.gather(
            complete(database, a, status=status_a), complete(database, b, status=status_b)
        )
    else:
        for run_id, *_, status in made:
            assert await complete(database, run_id, status=status) == (
                status is RunStatus.COMPLETED
            )

    runs = [
        Recorded(run_id, scope, presets.get(scope), at, await _results(client, admin, run_id))
        for run_id, scope, at, status in made
        if status is RunStatus.COMPLETED
    ]
    scopes, everything = _expected(runs)
    got = await directory_pages(client, admin)
    assert [_row(item) for item in got] == [
        everything[name] for name in _ordered(list(everything.values()), "last_seen", True)
    ]
    for scope, preset_id in presets.items():
        expected = scopes.get(scope, {})
        got = await directory_pages(client, admin, preset_id=preset_id)
        assert [_row(item) for item in got] == [
            expected[name] for name in _ordered(list(expected.values()), "last_seen", True)
        ]
    for sort in ORDERS:
        for order in ("asc", "desc"):
            names = [
                i["username"]
                for i in await directory_pages(client, admin, 4, sort=sort, order=order)
            ]
            assert names == _ordered(list(everything.values()), sort, order == "desc"), (
                sort,
                order,
            )
        default = await directory_pages(client, admin, 5, sort=sort)
        assert [i["username"] for i in default] == _ordered(
            list(everything.values()), sort, sort in DEFAULT_DESCENDING
        )

    for username in sorted(everything)[:3]:
        detail = (await client.get(f"/collection/sellers/{username}", headers=admin.headers)).json()
        assert _row(detail) == everything[username]
        assert {h["preset_id"]: _row(h) for h in detail["history"]} == {
            presets.get(scope): rows[username] for scope, rows in scopes.items() if username in rows
        }
        for history in detail["history"]:
            scope = (
                next(s for s, p in presets.items() if p == history["preset_id"])
                if history["preset_id"]
                else "list"
            )
            seen = sorted(
                (r for r in runs if r.scope == scope and username in r.sellers),
                key=lambda r: r.created_at,
                reverse=True,
            )
            assert [
                (run["run_id"], run["rank"], run["products"], run["listings"])
                for run in history["runs"]
            ] == [(str(r.run_id), *r.sellers[username]) for r in seen]
            assert history["category_ids"] == (
                ["3", "4"] if scope == "list" else ["1" if scope == "A" else "2"]
            )


async def _trends(client: httpx.AsyncClient, admin: Actor, preset_id: str) -> dict[str, str | None]:
    return {
        item["username"]: item["trend"]
        for item in await directory_pages(client, admin, preset_id=preset_id)
    }


async def test_trends_across_three_runs(
    client: httpx.AsyncClient, actors: Actors, database: Database
) -> None:
    """One preset's runs: a seller ranks by the products it lists (a: 3, b: 2, c: 1...)."""
    admin = await actors.admin()
    preset = await _preset(client, admin, "Tools", ["1"])
    first = listings("abc", "ab", "a")  # ranks a 1, b 2, c 3
    await completed_run(client, database, admin, first, T0, preset_id=preset)
    assert await _trends(client, admin, preset) == {
        "seller-a": "new",
        "seller-b": "new",
        "seller-c": "new",
    }
    second = listings("abd", "bd", "bd", "e")  # b 1, d 2, a 3, e 4; c went
    await completed_run(client, database, admin, second, T0 + timedelta(days=1), preset_id=preset)
    assert await _trends(client, admin, preset) == {
        "seller-a": "down",
        "seller-b": "up",
        "seller-c": "gone",
        "seller-d": "new",
        "seller-e": "new",
    }
    third = listings("bcd", "bd", "b", "e")  # b 1, d 2, c 3, e 4; a went, c is back
    await completed_run(client, database, admin, third, T0 + timedelta(days=2), preset_id=preset)
    assert await _trends(client, admin, preset) == {
        "seller-a": "gone",
        "seller-b": "same",
        "seller-c": "new",
        "seller-d": "same",
        "seller-e": "same",
    }
    fourth = listings("bd", "b")  # b 1, d 2; c and e went, a long gone
    await completed_run(client, database, admin, fourth, T0 + timedelta(days=3), preset_id=preset)
    assert await _trends(client, admin, preset) == {
        "seller-a": None,
        "seller-b": "same",
        "seller-c": "gone",
        "seller-d": "same",
        "seller-e": "gone",
    }
    # and over all runs: the same (one preset), with the history of each
    overall = {item["username"]: item for item in await directory_pages(client, admin)}
    assert {name: item["trend"] for name, item in overall.items()} == await _trends(
        client, admin, preset
    )
    assert (overall["seller-a"]["runs_seen"], overall["seller-a"]["rank"]) == (2, 3)
    assert datetime.fromisoformat(overall["seller-c"]["first_seen_at"]) == T0


async def test_a_run_is_recorded_once_and_only_when_completed(
    client: httpx.AsyncClient, actors: Actors, database: Database
) -> None:
    admin = await actors.admin()
    run_id = await completed_run(client, database, admin, listings("ab", "a"), T0)
    before = await directory_pages(client, admin)
    assert await complete(database, run_id) is False  # already recorded: nothing changes
    assert await directory_pages(client, admin) == before
    assert [item["runs_seen"] for item in before] == [1, 1]

    failed = await new_run(client, admin)
    await write_listings(database, failed, listings("abc"))
    assert await complete(database, failed, status=RunStatus.FAILED) is False
    assert await directory_pages(client, admin) == before


async def test_the_pipeline_records_the_runs_it_completes(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    """Two real runs of a preset (the sample market): the directory's latest figures are
    the latest run's ranking, and `new` is exactly "new since the last run"."""
    admin = await actors.admin()
    preset = await _preset(client, admin, "Kitchen", ["172282"])
    body = {"preset_id": preset, "products_per_category": 5, "listings_per_product": 10}
    await finished_run(client, admin, body)
    latest = await finished_run(client, admin, body)
    page = (
        await client.get(
            f"/collection/runs/{latest}/sellers", params={"limit": 200}, headers=admin.headers
        )
    ).json()
    ranking = {s["username"]: s for s in page["items"]}
    directory = {item["username"]: item for item in await directory_pages(client, admin, 50)}
    assert ranking
    assert set(ranking) <= set(directory)
    for name, seller in ranking.items():
        entry = directory[name]
        assert (entry["last_run_id"], entry["rank"], entry["products"]) == (
            latest,
            seller["rank"],
            seller["products"],
        )
        assert (entry["trend"] == "new") == seller["new_since_last_run"]
        assert entry["last_preset_id"] == preset
    assert all(item["trend"] == "gone" for n, item in directory.items() if n not in ranking)
