"""The Keepa client against a fake Keepa on loopback: best sellers and product data, token
waits instead of failures, clear errors, and runs that wait for tokens and resume."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.responses import JSONResponse, Response

from app.providers.base import ProviderError, QuotaExhaustedError
from app.providers.keepa import KeepaAmazonProvider, KeepaTokens
from app.providers.resilience import ProviderFailedError
from app.runs.executor import RunExecutor
from tests.helpers.actors import Actor
from tests.helpers.fake_marketplaces import (
    FakeKeepa,
    keepa_product,
    providers_of,
    resilient_amazon,
)
from tests.helpers.runs import create_run, executed_here, finished, start, wait_for

CATEGORY = "172282"


def client_for(fake: FakeKeepa, http: httpx.AsyncClient, **options: Any) -> KeepaAmazonProvider:
    """A client of `fake` whose idea of Keepa's refill interval matches the fake's."""
    options.setdefault("refill_interval", timedelta(seconds=fake.refill_seconds))
    return KeepaAmazonProvider(
        api_key=options.pop("api_key", FakeKeepa.KEY), http=http, base_url=fake.url, **options
    )


def catalog(prefix: str, count: int) -> list[dict[str, Any]]:
    """`count` products with UPCs and prices; ASINs B0<prefix><index>."""
    return [
        keepa_product(
            f"B0{prefix}{index:06d}",
            f"Brand{index} Widget W-{index}, Stainless Steel, Black",
            brand=f"Brand{index}",
            amazon_cents=1000 + index,
            upcs=[f"{800_000_000_000 + index}"],
        )
        for index in range(count)
    ]


# --- best sellers and product data ---------------------------------------------------------


async def test_best_sellers_are_ranked_and_carry_product_data(
    keepa: FakeKeepa, http: httpx.AsyncClient
) -> None:
    keepa.add_category(
        CATEGORY,
        [
            keepa_product(
                "B0AAAAAAA1",
                "  VOLTKO Wireless Earbuds WE-512X, Bluetooth 5.3  ",
                brand="VOLTKO",
                amazon_cents=2999,
                new_cents=2799,
                upcs=["012345678905", "012345678912"],
                eans=["4006381333931"],
            ),
            keepa_product("B0AAAAAAA2", "Auricle Speaker", brand="", new_cents=1550),
            keepa_product("B0AAAAAAA3", "Lumiq Lamp, LED", brand=None),
            keepa_product("B0AAAAAAA4", "Not wanted: beyond the limit", amazon_cents=100),
        ],
    )
    amazon = client_for(keepa, http)
    products = await amazon.best_sellers(CATEGORY, 3)

    assert [(p.asin, p.sales_rank) for p in products] == [
        ("B0AAAAAAA1", 1),
        ("B0AAAAAAA2", 2),
        ("B0AAAAAAA3", 3),
    ]
    first, second, third = products
    assert first.title == "VOLTKO Wireless Earbuds WE-512X, Bluetooth 5.3"
    assert first.brand == "VOLTKO"
    assert first.price == Decimal("29.99")  # Amazon's own offer, from stats.current
    assert first.currency == "USD"
    assert first.upcs == ("012345678905", "012345678912")
    assert first.eans == ("4006381333931",)
    assert first.gtin == "012345678905"
    assert first.category_id == CATEGORY
    assert (second.brand, second.price) == (None, Decimal("15.50"))  # lowest new offer
    assert (third.price, third.upcs, third.eans) == (None, (), ())  # -1 everywhere: no price

    (listing,) = keepa.calls("/bestsellers")
    assert listing.params == {
        "key": FakeKeepa.KEY,
        "domain": "1",
        "category": CATEGORY,
        "range": "0",
    }
    (details,) = keepa.calls("/product")
    assert details.params["asin"] == "B0AAAAAAA1,B0AAAAAAA2,B0AAAAAAA3"
    assert details.params["stats"] == "1"
    assert details.params["domain"] == "1"
    assert "gzip" in details.headers["accept-encoding"]  # Keepa answers gzip-compressed


async def test_product_data_is_requested_in_batches_of_100(
    keepa: FakeKeepa, http: httpx.AsyncClient
) -> None:
    keepa.add_category(CATEGORY, catalog("B", 250))
    products = await client_for(keepa, http).best_sellers(CATEGORY, 230)
    assert [p.sales_rank for p in products] == list(range(1, 231))
    assert [len(r.params["asin"].split(",")) for r in keepa.calls("/product")] == [100, 100, 30]
    assert products[-1].price == Decimal("12.29")


async def test_range_and_domain_come_from_the_client(
    keepa: FakeKeepa, http: httpx.AsyncClient
) -> None:
    product = keepa_product("B0CCCCCCC1", "Kordex Kettle", amazon_cents=4599)
    product.pop("_current")  # no stats: the price comes from the csv history
    keepa.add_category(CATEGORY, [product])
    amazon = client_for(keepa, http, domain=3, bestsellers_range=90)
    (found,) = await amazon.best_sellers(CATEGORY, 10)
    assert (found.price, found.currency) == (Decimal("45.99"), "EUR")
    (listing,) = keepa.calls("/bestsellers")
    assert (listing.params["domain"], listing.params["range"]) == ("3", "90")


async def test_asins_without_product_data_are_left_out_keeping_the_ranks(
    keepa: FakeKeepa, http: httpx.AsyncClient
) -> None:
    keepa.add_category(CATEGORY, catalog("D", 3))
    keepa.categories[CATEGORY].insert(1, "B0UNKNOWN1")  # listed, but Keepa has no data
    products = await client_for(keepa, http).best_sellers(CATEGORY, 4)
    assert [(p.asin, p.sales_rank) for p in products] == [
        ("B0D000000", 1),
        ("B0D000001", 3),
        ("B0D000002", 4),
    ]


async def test_a_category_without_a_list_has_no_best_sellers(
    keepa: FakeKeepa, http: httpx.AsyncClient
) -> None:
    assert await client_for(keepa, http).best_sellers("999999", 10) == []
    assert keepa.calls("/product") == []


def test_token_projection_counts_refills() -> None:
    start_ = datetime(2027, 1, 1, tzinfo=UTC)
    tokens = KeepaTokens(
        tokens_left=-120, refill_in=timedelta(seconds=10), refill_rate=50, observed_at=start_
    )
    assert tokens.projected(start_ + timedelta(seconds=9)) == -120
    assert tokens.projected(start_ + timedelta(seconds=10)) == -70
    assert tokens.projected(start_ + timedelta(seconds=70)) == -20
    # 121 tokens to come at 50 per refill: the third refill, at 10 s + 2 minutes
    assert tokens.available_at(1) == start_ + timedelta(seconds=130)
    assert tokens.available_at(-200) == start_


# --- tokens: wait, do not fail, do not hammer ------------------------------------------------


async def test_out_of_tokens_raises_quota_exhausted_with_the_refill_time(
    keepa: FakeKeepa, http: httpx.AsyncClient
) -> None:
    keepa.add_category(CATEGORY, catalog("E", 5))
    keepa.set_tokens(0, refill_rate=100, refill_seconds=0.3, held=True)
    amazon = client_for(keepa, http)
    before = datetime.now(UTC)
    with pytest.raises(QuotaExhaustedError) as caught:
        await amazon.best_sellers(CATEGORY, 5)
    assert caught.value.status_code == 429
    assert before < caught.value.resume_at <= datetime.now(UTC) + timedelta(seconds=0.3)
    assert len(keepa.calls("/bestsellers")) == 1

    # asking again before the refill sends nothing: the client knows the balance
    with pytest.raises(QuotaExhaustedError):
        await amazon.best_sellers(CATEGORY, 5)
    assert len(keepa.calls("/bestsellers")) == 1

    keepa.release_refills()
    await asyncio.sleep(max(0.0, (caught.value.resume_at - datetime.now(UTC)).total_seconds()))
    assert len(await amazon.best_sellers(CATEGORY, 5)) == 5


async def test_a_balance_spent_below_zero_is_waited_out_and_the_list_not_bought_twice(
    keepa: FakeKeepa, http: httpx.AsyncClient
) -> None:
    keepa.add_category(CATEGORY, catalog("F", 20))
    keepa.set_tokens(30, refill_rate=100, refill_seconds=0.3, held=True)
    amazon = client_for(keepa, http)
    with pytest.raises(QuotaExhaustedError) as caught:  # the list costs 50: balance -20
        await amazon.best_sellers(CATEGORY, 20)
    assert keepa.tokens == -20
    assert keepa.calls("/product") == []  # not even tried: the client knew

    keepa.release_refills()
    await asyncio.sleep(max(0.0, (caught.value.resume_at - datetime.now(UTC)).total_seconds()))
    assert len(await amazon.best_sellers(CATEGORY, 20)) == 20
    assert keepa.charged == {"/bestsellers": 1, "/product": 1}


async def test_token_status_is_free(keepa: FakeKeepa, http: httpx.AsyncClient) -> None:
    keepa.set_tokens(1234, refill_rate=20, refill_seconds=60)
    status = await client_for(keepa, http).token_status()
    assert (status.tokens_left, status.refill_rate) == (1234, 20)
    assert timedelta(0) < status.refill_in <= timedelta(seconds=60)
    assert keepa.tokens == 1234


# --- errors -------------------------------------------------------------------------------


async def test_a_bad_key_fails_at_once_with_keepas_message(
    keepa: FakeKeepa, http: httpx.AsyncClient
) -> None:
    keepa.add_category(CATEGORY, catalog("G", 3))
    amazon = resilient_amazon(client_for(keepa, http, api_key="not-the-key"))
    with pytest.raises(ProviderFailedError) as caught:
        await amazon.best_sellers(CATEGORY, 3)
    message = str(caught.value)
    assert "Keepa rejected the request (HTTP 400): invalidKey: Invalid API key." in message
    assert "KEEPA_API_KEY" in message
    assert "not-the-key" not in message
    assert caught.value.attempts == 1
    assert len(keepa.requests) == 1  # no retry storm


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            JSONResponse(
                {"error": {"type": "paymentRequired", "message": "No active plan."}},
                status_code=402,
            ),
            "Keepa requires payment (HTTP 402): paymentRequired: No active plan.",
        ),
        (
            JSONResponse({"error": {"message": "wrong method"}}, status_code=405),
            "Keepa answered HTTP 405: wrong method",
        ),
        (
            JSONResponse(
                {
                    "tokensLeft": 10,
                    "refillIn": 100,
                    "refillRate": 5,
                    "error": {"type": "invalidParameter", "message": "bad category"},
                }
            ),
            "Keepa refused the /bestsellers request: invalidParameter: bad category",
        ),
    ],
    ids=["402", "405", "error-in-200"],
)
async def test_refusals_are_not_retried(
    keepa: FakeKeepa, http: httpx.AsyncClient, answer: Response, message: str
) -> None:
    keepa.script("/bestsellers", answer)
    with pytest.raises(ProviderError) as caught:
        await client_for(keepa, http).best_sellers(CATEGORY, 3)
    assert message in str(caught.value)
    assert not caught.value.retryable


async def test_server_errors_are_retried(keepa: FakeKeepa, http: httpx.AsyncClient) -> None:
    keepa.add_category(CATEGORY, catalog("H", 2))
    keepa.script(
        "/bestsellers",
        JSONResponse({"error": {"type": "internal"}}, status_code=500),
        Response("Bad gateway", status_code=502),
    )
    products = await resilient_amazon(client_for(keepa, http)).best_sellers(CATEGORY, 2)
    assert len(products) == 2
    assert len(keepa.calls("/bestsellers")) == 3


MALFORMED = [
    ("/bestsellers", Response("<html>maintenance</html>"), "is not a JSON object"),
    ("/bestsellers", JSONResponse({"bestSellersList": None}), "lacks tokensLeft"),
    (
        "/bestsellers",
        JSONResponse(
            {"tokensLeft": 5, "refillIn": 1, "refillRate": 5, "bestSellersList": {"asinList": 7}}
        ),
        "asinList is not a list",
    ),
    ("/product", JSONResponse({"tokensLeft": 5, "refillIn": 1, "refillRate": 5}), "no products"),
    (
        "/product",
        JSONResponse(
            {
                "tokensLeft": 5,
                "refillIn": 1,
                "refillRate": 5,
                "products": [{"asin": "B0I000000", "title": 42}],
            }
        ),
        "title of B0I000000 is not a string",
    ),
    (
        "/product",
        JSONResponse(
            {
                "tokensLeft": 5,
                "refillIn": 1,
                "refillRate": 5,
                "products": [{"asin": "B0I000000", "title": "T", "stats": {"current": ["12.99"]}}],
            }
        ),
        "stats.current of B0I000000 is not a list of integers",
    ),
]


@pytest.mark.parametrize(("path", "answer", "message"), MALFORMED)
async def test_malformed_answers_are_clear_errors(
    keepa: FakeKeepa, http: httpx.AsyncClient, path: str, answer: Response, message: str
) -> None:
    keepa.add_category(CATEGORY, catalog("I", 1))
    keepa.script(path, answer)
    with pytest.raises(ProviderError) as caught:
        await client_for(keepa, http).best_sellers(CATEGORY, 1)
    assert str(caught.value).startswith("Keepa sent a malformed response: ")
    assert message in str(caught.value)
    assert not caught.value.retryable


# --- runs ----------------------------------------------------------------------------------


async def test_a_run_waits_for_tokens_then_resumes_from_its_checkpoint(
    client: httpx.AsyncClient,
    admin: Actor,
    app: FastAPI,
    keepa: FakeKeepa,
    http: httpx.AsyncClient,
) -> None:
    categories = ["1001", "1002", "1003"]
    for number, category in enumerate(categories):
        keepa.add_category(category, catalog(f"J{number}", 5))
    # enough for one category (50 + 5 tokens); refills (60 every 0.3 s) once the run waits
    keepa.set_tokens(60, refill_rate=60, refill_seconds=0.3, held=True)
    with providers_of(app, amazon=resilient_amazon(client_for(keepa, http))):
        run = await create_run(client, admin, categories, products_per_category=5)
        await start(client, admin, run["id"])
        waiting = await wait_for(client, admin, run["id"], lambda r: r["resumes_at"] is not None)
        assert waiting["status"] == "running"
        assert waiting["error"] is None
        assert datetime.fromisoformat(waiting["resumes_at"]) > datetime.fromisoformat(
            waiting["started_at"]
        )
        keepa.release_refills()
        done = await wait_for(client, admin, run["id"], finished, within=20)

    assert done["status"] == "completed", done
    assert done["resumes_at"] is None
    assert done["progress"]["categories_done"] == 3
    assert done["progress"]["products_found"] == 15
    # every list and every product batch was paid for exactly once
    assert keepa.charged == {"/bestsellers": 3, "/product": 3}


async def test_a_bad_key_fails_the_run_at_once(
    client: httpx.AsyncClient,
    admin: Actor,
    app: FastAPI,
    keepa: FakeKeepa,
    http: httpx.AsyncClient,
) -> None:
    keepa.add_category(CATEGORY, catalog("K", 3))
    amazon = resilient_amazon(client_for(keepa, http, api_key="revoked-key"))
    with providers_of(app, amazon=amazon):
        run = await create_run(client, admin, [CATEGORY])
        await start(client, admin, run["id"])
        done = await wait_for(client, admin, run["id"], finished)
    assert done["status"] == "failed"
    assert "Invalid API key" in done["error"]
    assert "KEEPA_API_KEY" in done["error"]
    assert len(keepa.requests) == 1


async def test_a_malformed_answer_fails_the_run_with_a_clear_error(
    client: httpx.AsyncClient,
    admin: Actor,
    app: FastAPI,
    keepa: FakeKeepa,
    http: httpx.AsyncClient,
) -> None:
    keepa.add_category(CATEGORY, catalog("L", 3))
    keepa.script("/product", Response("{not json", media_type="application/json"))
    with providers_of(app, amazon=resilient_amazon(client_for(keepa, http))):
        run = await create_run(client, admin, [CATEGORY])
        await start(client, admin, run["id"])
        done = await wait_for(client, admin, run["id"], finished)
    assert done["status"] == "failed"
    assert done["error"] == (
        f"Amazon best sellers of category {CATEGORY} failed: Keepa sent a malformed response: "
        "the /product answer (HTTP 200) is not a JSON object"
    )
    executor: RunExecutor = app.state.instance.executor
    await executed_here(executor, run["id"])
    assert uuid.UUID(run["id"]) not in executor.running
