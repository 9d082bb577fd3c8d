"""Full runs with the real Keepa and eBay clients against the fakes on loopback: sellers
ranked, waiting for eBay's budget or daily limit and resuming, pause and cancel while a run
waits, and a run taken over while it waits."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import httpx
import sqlalchemy as sa
from fastapi import FastAPI

from app.core.clock import utcnow
from app.core.database import Database
from app.providers import build_providers
from app.providers.base import (
    Listing,
    Product,
    gtin_check_digit,
)
from app.providers.budget import DailyCallBudget, SharedDailyCallBudget, next_midnight
from app.providers.ebay import daily_budget
from app.providers.keepa import KeepaAmazonProvider
from app.providers.sample import SampleEbayProvider
from app.runs.executor import RunExecutor
from app.tables import CollectionRun, ProviderCallCount, RunStatus
from tests.helpers.actors import Actor
from tests.helpers.ebay import client_for, real_settings
from tests.helpers.fake_marketplaces import (
    FakeEbay,
    FakeKeepa,
    ebay_item,
    keepa_product,
    providers_of,
    resilient_amazon,
    resilient_ebay,
)
from tests.helpers.runs import create_run, finished, start, wait_for
from tests.helpers.settings import make_settings

# --- runs ------------------------------------------------------------------------------------


def stock_keepa(keepa: FakeKeepa) -> None:
    """Two categories of three products; the last one has only an EAN."""
    for category, prefix in (("2001", "M"), ("2002", "N")):
        keepa.add_category(
            category,
            [
                keepa_product(
                    f"B0{prefix}00000{n}",
                    f"Brand{prefix} Gadget G-{n}{prefix}, Black",
                    brand=f"Brand{prefix}",
                    amazon_cents=1999,
                    upcs=[upc_of(prefix, n)] if n < 2 else None,
                    eans=None if n < 2 else ["4006381333931"],
                )
                for n in range(3)
            ],
        )


def upc_of(prefix: str, n: int) -> str:
    """The UPC of product `n` of category `prefix` in `stock_keepa`."""
    body = f"0{ord(prefix) % 10}00000000{n}"
    return body + gtin_check_digit(body)


async def test_a_full_run_with_keepa_and_ebay_ranks_the_sellers(
    client: httpx.AsyncClient,
    admin: Actor,
    app: FastAPI,
    keepa: FakeKeepa,
    ebay: FakeEbay,
    database: Database,
) -> None:
    stock_keepa(keepa)
    listed_by = {
        upc_of("M", 0): ["alpha_deals", "alpha_deals", "beta_store", "gamma.goods"],
        upc_of("M", 1): ["alpha_deals", "beta_store", "alpha_deals"],
        upc_of("N", 0): ["alpha_deals", "alpha_deals"],
        upc_of("N", 1): ["beta_store", "alpha_deals", "gamma.goods", "alpha_deals"],
    }
    for upc, sellers in listed_by.items():
        ebay.list_by_gtin(upc, [ebay_item(f"Gadget {upc}", s, price="19.50") for s in sellers])
    ebay.list_for_keywords(
        [
            ebay_item("BrandM Gadget G-2M New", "alpha_deals"),
            ebay_item("BrandN Gadget G-2N", "delta_shop"),
            ebay_item("BrandM Gadget G-9M", "zeta_wrong_model"),
        ]
    )
    settings = make_settings(**real_settings(keepa, ebay))
    amazon, ebay_provider = build_providers(
        settings, http=app.state.instance.http, database=database
    )
    assert isinstance(ebay_provider.inner.budget, SharedDailyCallBudget)  # type: ignore[attr-defined]
    with providers_of(app, amazon=amazon, ebay=ebay_provider):
        run = await create_run(client, admin, ["2001", "2002"])
        await start(client, admin, run["id"])
        done = await wait_for(client, admin, run["id"], finished)

    assert done["status"] == "completed", done
    assert done["progress"]["products_found"] == 6
    assert done["progress"]["products_searched"] == 6
    sellers = (
        await client.get(f"/collection/runs/{run['id']}/sellers", headers=admin.headers)
    ).json()["items"]
    ranking = [(s["rank"], s["username"], s["products"], s["listings"]) for s in sellers]
    # alpha_deals: two listings of each UPC product, one keyword match (G-2M); zeta's
    # G-9M was found by the keywords but is another model, so it is not counted
    assert ranking == [
        (1, "alpha_deals", 5, 9),
        (2, "beta_store", 3, 3),
        (3, "gamma.goods", 2, 2),
        (4, "delta_shop", 1, 1),
    ]
    assert Decimal(sellers[0]["min_price"]) == Decimal("19.50")
    assert Decimal(sellers[0]["feedback_percentage"]) == Decimal("99.2")
    assert done["progress"]["listings_found"] == 15
    assert done["progress"]["sellers_found"] == 4
    assert len(ebay.calls(FakeEbay.TOKEN_PATH)) == 1  # one token for the whole run
    async with database.read() as session:
        counted = await session.scalar(sa.select(sa.func.sum(ProviderCallCount.calls)))
    # one search per product by its GTIN; the two with only an EAN, which eBay does not
    # list under it, are searched by their title too
    assert counted == len(ebay.calls(FakeEbay.SEARCH_PATH)) == 8


async def test_a_run_waits_for_the_ebay_budget_then_resumes(
    client: httpx.AsyncClient,
    admin: Actor,
    app: FastAPI,
    keepa: FakeKeepa,
    ebay: FakeEbay,
    http: httpx.AsyncClient,
) -> None:
    stock_keepa(keepa)
    for prefix in "MN":
        for n in range(2):
            ebay.list_by_gtin(upc_of(prefix, n), [ebay_item("Gadget", "alpha_deals")])
    ebay.list_by_gtin("4006381333931", [ebay_item("Gadget", "alpha_deals")])  # the EAN ones
    budget = DailyCallBudget(
        2,
        provider="ebay",
        setting="EBAY_DAILY_CALL_LIMIT",
        label="eBay",
        next_reset=lambda now: now + timedelta(seconds=0.3),
    )
    keepa_client = KeepaAmazonProvider(api_key=FakeKeepa.KEY, http=http, base_url=keepa.url)
    ebay_client = client_for(ebay, http, budget=budget)
    with providers_of(app, amazon=resilient_amazon(keepa_client), ebay=resilient_ebay(ebay_client)):
        run = await create_run(client, admin, ["2001", "2002"])
        await start(client, admin, run["id"])
        waiting = await wait_for(client, admin, run["id"], lambda r: r["resumes_at"] is not None)
        assert waiting["status"] == "running"
        assert waiting["progress"]["products_searched"] < 6
        assert waiting["waiting_for"] == (
            "this service's daily eBay call budget (EBAY_DAILY_CALL_LIMIT=2)"
        )
        done = await wait_for(client, admin, run["id"], finished)
    assert done["status"] == "completed", done
    assert done["resumes_at"] is None
    assert done["progress"]["products_searched"] == 6
    assert done["progress"]["sellers_found"] == 1
    assert len(ebay.calls(FakeEbay.SEARCH_PATH)) == 6  # never more than the budget allowed


async def test_a_run_says_it_waits_for_ebays_daily_limit_until_ebays_reset(
    client: httpx.AsyncClient,
    admin: Actor,
    app: FastAPI,
    keepa: FakeKeepa,
    ebay: FakeEbay,
    http: httpx.AsyncClient,
) -> None:
    stock_keepa(keepa)
    ebay.daily_limit = 2  # eBay's count, spent by another user of the keyset as well
    ebay.quota_reset = utcnow().replace(microsecond=0) + timedelta(hours=3)
    keepa_client = KeepaAmazonProvider(api_key=FakeKeepa.KEY, http=http, base_url=keepa.url)
    ebay_client = client_for(ebay, http, budget=daily_budget(5000))
    with providers_of(app, amazon=resilient_amazon(keepa_client), ebay=resilient_ebay(ebay_client)):
        run = await create_run(client, admin, ["2001", "2002"])
        await start(client, admin, run["id"])
        waiting = await wait_for(client, admin, run["id"], lambda r: r["resumes_at"] is not None)
        await client.post(f"/collection/runs/{run['id']}/cancel", headers=admin.headers)
        await wait_for(client, admin, run["id"], finished)
    assert waiting["waiting_for"] == "eBay's daily call limit (eBay reports 0 of 2 calls left)"
    assert datetime.fromisoformat(waiting["resumes_at"]) == ebay.quota_reset


async def test_pause_and_cancel_work_while_a_run_waits_for_quota(
    client: httpx.AsyncClient,
    admin: Actor,
    app: FastAPI,
    keepa: FakeKeepa,
    ebay: FakeEbay,
    http: httpx.AsyncClient,
) -> None:
    stock_keepa(keepa)
    ebay.list_by_gtin(upc_of("M", 0), [ebay_item("Gadget", "alpha_deals")])
    keepa_client = KeepaAmazonProvider(api_key=FakeKeepa.KEY, http=http, base_url=keepa.url)
    ebay_client = client_for(ebay, http, budget=daily_budget(1))
    executor: RunExecutor = app.state.instance.executor
    with providers_of(app, amazon=resilient_amazon(keepa_client), ebay=resilient_ebay(ebay_client)):
        run = await create_run(client, admin, ["2001", "2002"])
        run_id = uuid.UUID(run["id"])
        await start(client, admin, run["id"])
        waiting = await wait_for(client, admin, run["id"], lambda r: r["resumes_at"] is not None)
        resumes_at = datetime.fromisoformat(waiting["resumes_at"])
        assert resumes_at == next_midnight(utcnow())
        assert waiting["progress"]["products_searched"] == 1

        pausing = await client.post(f"/collection/runs/{run['id']}/pause", headers=admin.headers)
        assert pausing.status_code == 200
        assert pausing.json()["status"] == "pausing"  # nothing in flight: paused promptly
        paused = await wait_for(client, admin, run["id"], lambda r: r["status"] == "paused")
        assert (paused["resumes_at"], paused["waiting_for"]) == (None, None)
        for _ in range(100):
            if run_id not in executor.running:
                break
            await asyncio.sleep(0.01)
        assert run_id not in executor.running  # the wait noticed the pause

        resumed = await client.post(f"/collection/runs/{run['id']}/resume", headers=admin.headers)
        assert resumed.json()["status"] == "running"
        again = await wait_for(client, admin, run["id"], lambda r: r["resumes_at"] is not None)
        assert again["progress"]["products_searched"] == 1

        cancelling = await client.post(
            f"/collection/runs/{run['id']}/cancel", headers=admin.headers
        )
        assert cancelling.json()["status"] == "cancelling"
        cancelled = await wait_for(client, admin, run["id"], finished)
        assert (cancelled["status"], cancelled["resumes_at"]) == ("cancelled", None)
        for _ in range(100):
            if run_id not in executor.running:
                break
            await asyncio.sleep(0.01)
        assert run_id not in executor.running
    assert len(ebay.calls(FakeEbay.SEARCH_PATH)) == 1


class RecordingEbay:
    """The sample eBay provider, noting when it is first called."""

    name = "recording"

    def __init__(self) -> None:
        self.inner = SampleEbayProvider(latency_ms=0)
        self.first_call: datetime | None = None

    async def search(
        self, product: Product, limit: int, *, as_of: datetime | None = None
    ) -> list[Listing]:
        self.first_call = self.first_call or utcnow()
        return await self.inner.search(product, limit, as_of=as_of)


async def test_a_run_taken_over_while_waiting_waits_out_the_rest(
    client: httpx.AsyncClient, admin: Actor, app: FastAPI, database: Database
) -> None:
    run = await create_run(client, admin, ["172282"])
    resumes_at = utcnow() + timedelta(seconds=0.3)
    async with database.transaction() as session:
        await session.execute(
            sa.update(CollectionRun)
            .where(CollectionRun.id == uuid.UUID(run["id"]))
            .values(
                status=RunStatus.RUNNING,
                started_at=utcnow(),
                lease_owner="dead-host:1",
                lease_expires_at=utcnow() - timedelta(seconds=1),
                resumes_at=resumes_at,
            )
        )
    recording = RecordingEbay()
    executor: RunExecutor = app.state.instance.executor
    with providers_of(app, ebay=recording):
        await executor.sweep()
        done = await wait_for(client, admin, run["id"], finished)
    assert done["status"] == "completed"
    assert done["resumes_at"] is None
    assert recording.first_call is not None
    assert recording.first_call >= resumes_at
