"""Collection runs through the API: lifecycle rules, the pipeline end to end with the
sample providers, pause/resume/cancel, results, CSV export, takeover and failures."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app.core.clock import utcnow
from app.core.database import Database
from app.providers.base import Listing, Product, ProviderError
from app.runs.executor import MAX_UNEXPECTED_ERRORS, RunExecutor
from app.runs.leases import Lease, LeaseLostError, Leases
from app.runs.pipeline import Pipeline
from app.runs.results import purge_expired_results
from app.tables import CollectionRun, RunCategory, RunListing, RunProduct, RunStatus
from tests.helpers.actors import Actor, Actors
from tests.helpers.runs import (
    create_run,
    executed_here,
    expected_listings,
    finished,
    start,
    stored_listings,
    wait_for,
)

# --- creation and lifecycle rules --------------------------------------------------------


async def test_run_from_preset_completes_with_consistent_progress(
    client: httpx.AsyncClient, admin: Actor, database: Database
) -> None:
    preset = await client.post(
        "/collection/presets",
        json={"name": "Mix", "category_ids": ["172282", "541966", "1055398"]},
        headers=admin.headers,
    )
    body = {"preset_id": preset.json()["id"], "products_per_category": 10}
    created = await client.post("/collection/runs", json=body, headers=admin.headers)
    assert created.status_code == 201, created.text
    run = created.json()
    assert run["status"] == "pending"
    assert run["phase"] is None
    assert run["trigger"] == "manual"
    assert run["name"].startswith("Mix ")
    assert run["category_ids"] == ["172282", "541966", "1055398"]
    assert run["created_by"] == str(admin.user_id)
    assert run["progress"]["categories_total"] == 3

    started = await start(client, admin, run["id"])
    assert started.status_code == 200
    assert started.json()["status"] == "running"
    assert started.json()["started_at"] is not None

    done = await wait_for(client, admin, run["id"], finished)
    assert done["status"] == "completed", done
    assert done["phase"] == "done"
    assert done["error"] is None
    progress = done["progress"]
    expected = await expected_listings(["172282", "541966", "1055398"], 10, 20)
    stored = await stored_listings(database, run["id"])
    assert sorted(stored) == sorted(expected)
    assert progress == {
        "categories_total": 3,
        "categories_done": 3,
        "products_found": 30,
        "products_searched": 30,
        "listings_found": len(expected),
        "sellers_found": len({seller for _, _, seller in expected}),
    }
    assert done["finished_at"] >= done["started_at"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "exactly one of preset_id or category_ids"),
        ({"preset_id": str(uuid.uuid4()), "category_ids": ["1"]}, "exactly one of"),
        ({"category_ids": []}, "at least one category ID"),
        ({"category_ids": ["x"]}, "digits only"),
        ({"category_ids": ["1"], "products_per_category": 0}, "greater than or equal to 1"),
        ({"category_ids": ["1"], "products_per_category": 101}, "less than or equal to 100"),
        ({"category_ids": ["1"], "priority": "high"}, "Extra inputs"),
    ],
)
async def test_invalid_run_request_is_422(
    client: httpx.AsyncClient, admin: Actor, body: Any, message: str
) -> None:
    response = await client.post("/collection/runs", json=body, headers=admin.headers)
    assert response.status_code == 422
    assert message in response.text
    runs = await client.get("/collection/runs", headers=admin.headers)
    assert runs.json()["items"] == []


async def test_preset_of_another_org_is_404(
    client: httpx.AsyncClient, actors: Actors, admin: Actor
) -> None:
    other = await actors.admin("Other")
    preset = await client.post(
        "/collection/presets", json={"name": "p", "category_ids": ["1"]}, headers=other.headers
    )
    response = await client.post(
        "/collection/runs", json={"preset_id": preset.json()["id"]}, headers=admin.headers
    )
    assert response.status_code == 404


async def test_second_active_run_is_409_naming_the_first(
    client: httpx.AsyncClient, admin: Actor
) -> None:
    first = await create_run(client, admin, ["1"])
    response = await client.post(
        "/collection/runs", json={"category_ids": ["2"]}, headers=admin.headers
    )
    assert response.status_code == 409
    assert first["id"] in response.json()["detail"]
    assert "(pending)" in response.json()["detail"]


async def test_twenty_concurrent_creates_yield_one_run(
    client: httpx.AsyncClient, admin: Actor
) -> None:
    responses = await asyncio.gather(
        *(
            client.post(
                "/collection/runs", json={"category_ids": [str(i + 1)]}, headers=admin.headers
            )
            for i in range(20)
        )
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * 19
    runs = (await client.get("/collection/runs", headers=admin.headers)).json()["items"]
    assert len(runs) == 1


async def test_other_orgs_runs_do_not_block(
    client: httpx.AsyncClient, actors: Actors, admin: Actor
) -> None:
    other = await actors.admin("Other")
    mine = await create_run(client, admin, ["1"])
    theirs = await create_run(client, other, ["1"])  # 201 although `mine` is active
    assert mine["status"] == theirs["status"] == "pending"
    assert mine["id"] != theirs["id"]


@pytest.mark.parametrize(
    ("setup", "action", "status"),
    [
        ([], "pause", "pending"),
        ([], "resume", "pending"),
        (["cancel"], "start", "cancelled"),
        (["cancel"], "cancel", "cancelled"),
        (["cancel"], "resume", "cancelled"),
    ],
)
async def test_disallowed_transition_is_409_with_current_status(
    client: httpx.AsyncClient, admin: Actor, setup: list[str], action: str, status: str
) -> None:
    run = await create_run(client, admin, ["1"])
    for step in setup:
        response = await client.post(f"/collection/runs/{run['id']}/{step}", headers=admin.headers)
        assert response.status_code == 200
    response = await client.post(f"/collection/runs/{run['id']}/{action}", headers=admin.headers)
    assert response.status_code == 409
    assert f"cannot {action} a run that is {status}" in response.json()["detail"]
    current = (await client.get(f"/collection/runs/{run['id']}", headers=admin.headers)).json()
    assert current["status"] == status


async def test_completed_run_cannot_be_started_paused_or_cancelled(
    client: httpx.AsyncClient, admin: Actor
) -> None:
    run = await create_run(client, admin, ["1"])
    await start(client, admin, run["id"])
    await wait_for(client, admin, run["id"], finished)
    for action in ("start", "pause", "resume", "cancel"):
        response = await client.post(
            f"/collection/runs/{run['id']}/{action}", headers=admin.headers
        )
        assert response.status_code == 409
        assert "completed" in response.json()["detail"]


async def test_cancel_pending_run_frees_the_slot(client: httpx.AsyncClient, admin: Actor) -> None:
    run = await create_run(client, admin, ["1"])
    cancelled = await client.post(f"/collection/runs/{run['id']}/cancel", headers=admin.headers)
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["finished_at"] is not None
    await create_run(client, admin, ["2"])


async def test_list_runs_filters_by_status_and_paginates(
    client: httpx.AsyncClient, admin: Actor
) -> None:
    ids = []
    for _ in range(3):
        run = await create_run(client, admin, ["1"])
        await client.post(f"/collection/runs/{run['id']}/cancel", headers=admin.headers)
        ids.append(run["id"])
    pending = await create_run(client, admin, ["1"])
    page = (await client.get("/collection/runs", params={"limit": 2}, headers=admin.headers)).json()
    assert [r["id"] for r in page["items"]] == [pending["id"], ids[2]]
    rest = (
        await client.get(
            "/collection/runs",
            params={"limit": 2, "cursor": page["next_cursor"]},
            headers=admin.headers,
        )
    ).json()
    assert [r["id"] for r in rest["items"]] == [ids[1], ids[0]]
    assert rest["next_cursor"] is None
    only_pending = (
        await client.get("/collection/runs", params={"status": "pending"}, headers=admin.headers)
    ).json()
    assert [r["id"] for r in only_pending["items"]] == [pending["id"]]
    bad = await client.get("/collection/runs", params={"status": "done"}, headers=admin.headers)
    assert bad.status_code == 422


# Pause, resume and cancel while running: tests/runs/test_run_pausing.py


# --- failures ----------------------------------------------------------------------------


class BrokenEbay:
    name = "broken"

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
        self.calls = 0

    async def search(self, product: Product, limit: int) -> list[Listing]:
        self.calls += 1
        raise ProviderError(
            f"HTTP {self.status_code} from broken",
            provider="broken",
            retryable=self.status_code >= 500,
            status_code=self.status_code,
        )


@pytest.mark.parametrize(("code", "attempts"), [(400, 1), (503, 2)])
async def test_provider_failure_fails_the_run_with_its_message(
    client: httpx.AsyncClient, admin: Actor, app: FastAPI, code: int, attempts: int
) -> None:
    from app.providers.resilience import RateLimiter, ResilientEbayProvider, RetryPolicy

    service: Pipeline = app.state.instance.pipeline
    original = service.ebay
    broken = BrokenEbay(code)

    async def no_sleep(_: float) -> None:
        return None

    service.ebay = ResilientEbayProvider(
        broken,
        limiter=RateLimiter(None),
        policy=RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0),
        timeout=5.0,
        sleep=no_sleep,
    )
    try:
        run = await create_run(client, admin, ["172282"], products_per_category=1)
        await start(client, admin, run["id"])
        done = await wait_for(client, admin, run["id"], finished)
    finally:
        service.ebay = original
    assert done["status"] == "failed"
    assert f"HTTP {code} from broken" in done["error"]
    assert broken.calls == attempts
    # a failed run frees the slot for the next one
    await create_run(client, admin, ["1"])


class BuggyEbay:
    """A provider with a bug: it raises what no provider error handling expects."""

    name = "buggy"

    def __init__(self) -> None:
        self.calls = 0

    async def search(self, product: Product, limit: int) -> list[Listing]:
        self.calls += 1
        raise ValueError("a bug in the provider")


async def test_unexpected_errors_are_retried_with_backoff_then_fail_the_run(
    client: httpx.AsyncClient, admin: Actor, app: FastAPI
) -> None:
    service: Pipeline = app.state.instance.pipeline
    executor: RunExecutor = app.state.instance.executor
    original, lease_seconds = service.ebay, executor.lease_seconds
    buggy = service.ebay = BuggyEbay()  # type: ignore[assignment]
    executor.lease_seconds = 0.1  # the backoff between attempts: 0.1 s, then 0.2 s
    try:
        run = await create_run(client, admin, ["172282"], products_per_category=1)
        await start(client, admin, run["id"])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not finished(
            current := (
                await client.get(f"/collection/runs/{run['id']}", headers=admin.headers)
            ).json()
        ):
            assert loop.time() < deadline, current
            assert buggy.calls <= MAX_UNEXPECTED_ERRORS  # no tight loop on the provider
            executor.poke()  # sweep often: only the backoff may hold the retries back
            await asyncio.sleep(0.02)
    finally:
        service.ebay, executor.lease_seconds = original, lease_seconds
    assert current["status"] == "failed"
    assert current["error"] == (
        "stopped after 3 unexpected errors; the last: ValueError: a bug in the provider"
    )
    assert buggy.calls == MAX_UNEXPECTED_ERRORS
    await executed_here(executor, run["id"])
    assert uuid.UUID(run["id"]) not in executor.running
    await create_run(client, admin, ["1"])  # and the slot is free again


class OutlandishAmazon:
    """Best sellers with data that does not fit the columns as it comes."""

    name = "outlandish"

    async def best_sellers(self, category_id: str, limit: int) -> list[Product]:
        return [
            Product(
                asin="B0OUTLAND1",
                title="Gadget " * 200,
                category_id=category_id,
                sales_rank=2**40,
                brand="B" * 250,
                price=Decimal("1e12"),
                upcs=("012345678905",),
            )
        ]


class OutlandishEbay:
    name = "outlandish"

    async def search(self, product: Product, limit: int) -> list[Listing]:
        return [
            Listing(
                item_id="v1|1|0",
                title="Gadget",
                price=Decimal("NaN"),
                currency="USD",
                seller_username="seller",
                seller_feedback_score=2**40,
                seller_feedback_percentage=Decimal("150.5"),
                url="https://www.ebay.com/itm/1",
            ),
            Listing(
                item_id="v1|2|0",
                title="Gadget",
                price=Decimal("24.999"),
                currency="USD",
                seller_username="seller",
                seller_feedback_score=12,
                seller_feedback_percentage=Decimal("99.5"),
                url="https://www.ebay.com/itm/2",
            ),
        ]


async def test_marketplace_data_that_does_not_fit_is_stored_as_far_as_it_fits(
    client: httpx.AsyncClient, admin: Actor, app: FastAPI, database: Database
) -> None:
    service: Pipeline = app.state.instance.pipeline
    original = service.amazon, service.ebay
    service.amazon, service.ebay = OutlandishAmazon(), OutlandishEbay()  # type: ignore[assignment]
    try:
        run = await create_run(client, admin, ["172282"], products_per_category=1)
        await start(client, admin, run["id"])
        done = await wait_for(client, admin, run["id"], finished)
    finally:
        service.amazon, service.ebay = original
    assert done["status"] == "completed", done
    async with database.read() as session:
        product = (await session.scalars(sa.select(RunProduct))).one()
        listings = (await session.scalars(sa.select(RunListing).order_by(RunListing.item_id))).all()
    assert (len(product.brand or ""), product.brand and product.brand[-1]) == (200, "…")
    assert (product.price, product.sales_rank) == (None, 2**31 - 1)
    assert [(x.price, x.seller_feedback_score, x.seller_feedback_percentage) for x in listings] == [
        (None, None, None),
        (Decimal("25.00"), 12, Decimal("99.50")),
    ]


async def test_the_sweep_skips_what_it_was_told_to_leave_alone(
    client: httpx.AsyncClient, admin: Actor, actors: Actors, database: Database, app: FastAPI
) -> None:
    first = await create_run(client, admin, ["172282"])
    other = await actors.admin("Other")
    second = await create_run(client, other, ["172282"])
    for run in (first, second):  # leases of "me" before a restart: this app leaves them be
        await _orphan(database, run["id"], owner="me", expired=False)
    leases: Leases = app.state.instance.leases
    both = await leases.orphaned_runs(owner="me", limit=5)
    assert {str(run_id) for run_id in both} == {first["id"], second["id"]}
    left = await leases.orphaned_runs(owner="me", limit=1, exclude=[both[0]])
    assert left == [both[1]]  # the first run, busy here, does not hide the other one


def _b64(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


TAMPERED_CURSORS = [
    _b64("[" * 5000),  # nested deeper than the JSON parser goes
    _b64('{"offset": 9223372036854775808}'),  # beyond any database integer
    _b64('{"offset": 1e400}'),
    _b64('{"offset": [1]}'),
    _b64('["9999-12-31T23:59:59-14:00", "00000000-0000-0000-0000-000000000000"]'),
    _b64('["0001-01-01T00:00:00+14:00", "00000000-0000-0000-0000-000000000000"]'),
    _b64('["2026-01-01T00:00:00+00:00", 12]'),
    _b64('{"a": 1, "b": 2}'),
    "A" * 5000,
    "%%%",
]


@pytest.mark.parametrize("cursor", TAMPERED_CURSORS)
async def test_a_tampered_cursor_is_400_on_every_list(
    client: httpx.AsyncClient, admin: Actor, cursor: str
) -> None:
    run = await create_run(client, admin, ["172282"])
    for path in ("/collection/runs", f"/collection/runs/{run['id']}/sellers"):
        response = await client.get(path, params={"cursor": cursor}, headers=admin.headers)
        assert response.status_code == 400, (path, response.text)
        assert "cursor is not valid" in response.json()["detail"]


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
    rows = list(reader)
    assert len(rows) == run["progress"]["listings_found"]
    stored = await stored_listings(database, run["id"])
    assert {(r[0], r[5], r[9]) for r in rows} == set(stored)
    assert all(len(r) == len(header) for r in rows)


async def test_csv_quotes_commas_quotes_and_newlines(database: Database) -> None:
    from app.runs.results import _csv_chunk

    chunk = _csv_chunk([["a,b", 'say "hi"', "two\nlines", None, Decimal("1.50")]]).decode()
    assert chunk == '"a,b","say ""hi""","two\nlines",,1.50\r\n'


async def test_csv_cells_never_run_as_spreadsheet_formulas(database: Database) -> None:
    from app.runs.results import _csv_chunk

    titles = ['=HYPERLINK("http://x.example","click")', "+1+cmd|' /C calc'!A0", "@SUM(1)", "-2"]
    chunk = _csv_chunk([[*titles, Decimal("-1.50"), -3, "Gadget - Black"]]).decode()
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


# --- leases: takeover and fencing ---------------------------------------------------------


async def _orphan(database: Database, run_id: str, owner: str, expired: bool) -> None:
    """Make the run look like another instance started it (and maybe died)."""
    offset = timedelta(seconds=-5 if expired else 300)
    async with database.transaction() as session:
        await session.execute(
            sa.update(CollectionRun)
            .where(CollectionRun.id == uuid.UUID(run_id))
            .values(
                status=RunStatus.RUNNING,
                started_at=utcnow(),
                lease_owner=owner,
                lease_expires_at=utcnow() + offset,
            )
        )


async def test_second_instance_takes_over_run_whose_owner_died(
    client: httpx.AsyncClient, admin: Actor, database: Database, app: FastAPI
) -> None:
    run = await create_run(client, admin, ["172282", "541966"])
    await _orphan(database, run["id"], owner="dead-host:1", expired=True)
    executor: RunExecutor = app.state.instance.executor
    await executor.sweep()
    done = await wait_for(client, admin, run["id"], finished)
    assert done["status"] == "completed"
    assert set(await stored_listings(database, run["id"])) == await expected_listings(
        ["172282", "541966"], 5, 20
    )


async def test_live_lease_of_another_instance_is_respected(
    client: httpx.AsyncClient, admin: Actor, database: Database, app: FastAPI
) -> None:
    run = await create_run(client, admin, ["172282"])
    await _orphan(database, run["id"], owner="alive-host:1", expired=False)
    executor: RunExecutor = app.state.instance.executor
    await executor.sweep()
    assert uuid.UUID(run["id"]) not in executor.running
    assert not await executor.submit(uuid.UUID(run["id"]))
    current = (await client.get(f"/collection/runs/{run['id']}", headers=admin.headers)).json()
    assert current["progress"]["categories_done"] == 0


async def test_checkpoint_without_the_lease_writes_nothing(
    client: httpx.AsyncClient, admin: Actor, database: Database, app: FastAPI
) -> None:
    run = await create_run(client, admin, ["172282"])
    await _orphan(database, run["id"], owner="other-host:1", expired=False)
    service: Pipeline = app.state.instance.pipeline
    zombie = Lease(uuid.UUID(run["id"]), "zombie-host:9")
    async with database.read() as session:
        row = await session.get_one(CollectionRun, uuid.UUID(run["id"]))
    with pytest.raises(LeaseLostError):
        await service.run_amazon_collection(zombie, row)
    current = (await client.get(f"/collection/runs/{run['id']}", headers=admin.headers)).json()
    assert current["progress"]["categories_done"] == 0
    assert current["progress"]["products_found"] == 0
    async with database.read() as session:  # nor rows the checkpoint would have written
        run_id = uuid.UUID(run["id"])
        products = await session.scalar(
            sa.select(sa.func.count()).where(RunProduct.run_id == run_id)
        )
        done = await session.scalar(
            sa.select(sa.func.count()).where(
                RunCategory.run_id == run_id, RunCategory.done_at.is_not(None)
            )
        )
    assert (products, done) == (0, 0)


async def test_executor_runs_at_most_its_capacity(
    client: httpx.AsyncClient, admin: Actor, database: Database, app: FastAPI
) -> None:
    run = await create_run(client, admin, ["172282"])
    await _orphan(database, run["id"], owner="dead-host:1", expired=True)  # free to take
    run_id = uuid.UUID(run["id"])
    executor: RunExecutor = app.state.instance.executor
    capacity = executor.max_concurrent
    executor.max_concurrent = 0  # its periodic sweep cannot take the run either
    try:
        assert not executor.has_capacity
        assert not await executor.submit(run_id)
        async with database.read() as session:
            owner = await session.scalar(
                sa.select(CollectionRun.lease_owner).where(CollectionRun.id == run_id)
            )
        assert owner == "dead-host:1"  # not claimed
    finally:
        executor.max_concurrent = capacity
    assert await executor.submit(run_id)  # the same run, with room for it
    done = await wait_for(client, admin, run["id"], finished)
    assert done["status"] == "completed"
