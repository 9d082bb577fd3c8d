"""Runs that go wrong: a provider's failure fails the run with its message, unexpected
errors are retried with back-off, marketplace data that does not fit is stored as far as it
fits, the sweep leaves alone the runs it was told to, and a tampered cursor is a 400."""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import datetime
from decimal import Decimal

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from app.core.database import Database
from app.providers.base import Listing, Product, ProviderError
from app.runs.executor import MAX_UNEXPECTED_ERRORS, RunExecutor
from app.runs.leases import Leases
from app.runs.pipeline import Pipeline
from app.tables import RunListing, RunProduct
from tests.helpers.actors import Actor, Actors
from tests.helpers.runs import (
    create_run,
    executed_here,
    finished,
    orphan,
    start,
    wait_for,
)

# --- failures ----------------------------------------------------------------------------


class BrokenEbay:
    name = "broken"

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
        self.calls = 0

    async def search(
        self, product: Product, limit: int, *, as_of: datetime | None = None
    ) -> list[Listing]:
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

    async def search(
        self, product: Product, limit: int, *, as_of: datetime | None = None
    ) -> list[Listing]:
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

    async def best_sellers(
        self, category_id: str, limit: int, *, as_of: datetime | None = None
    ) -> list[Product]:
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

    async def search(
        self, product: Product, limit: int, *, as_of: datetime | None = None
    ) -> list[Listing]:
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
        await orphan(database, run["id"], owner="me", expired=False)
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
