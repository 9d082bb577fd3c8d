"""Fake Keepa and eBay APIs on loopback: real HTTP, the documented formats, errors, throttling.

Each fake is a small Starlette app served by uvicorn in a thread on a free port, so the
clients under test go through httpx, sockets, gzip and all. Tests shape a fake's state
(catalog, tokens, budget) and can script the next answers of a path (an error sequence, a
malformed body) before it goes back to its normal behaviour. What the fakes reproduce from
the providers' documentation, and what they assume, is listed in each class docstring.
"""

from __future__ import annotations

import base64
import itertools
import math
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.providers.base import AmazonProvider, EbayProvider
from app.providers.resilience import (
    RateLimiter,
    ResilientAmazonProvider,
    ResilientEbayProvider,
    RetryPolicy,
)
from app.runs.pipeline import Pipeline
from tests.helpers.processes import free_port


@dataclass
class Recorded:
    """One request a fake received."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    form: dict[str, str] = field(default_factory=dict)


@contextmanager
def serve(app: Starlette) -> Iterator[str]:
    """Serve `app` on a free loopback port in a thread; yield its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"fake-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"fake server on port {port} did not start")
        time.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class _Fake:
    """Request log and scripted answers shared by both fakes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.url = ""
        self.requests: list[Recorded] = []
        self._scripted: dict[str, deque[Response]] = defaultdict(deque)

    def script(self, path: str, *responses: Response) -> None:
        """Answer the next requests to `path` with `responses`, in order, then normally."""
        with self.lock:
            self._scripted[path].extend(responses)

    def calls(self, path: str) -> list[Recorded]:
        """The requests received on `path`."""
        with self.lock:
            return [r for r in self.requests if r.path == path]

    async def _record(self, request: Request) -> Response | None:
        form: dict[str, str] = {}
        if request.method == "POST":
            form = {k: str(v) for k, v in (await request.form()).items()}
        with self.lock:
            self.requests.append(
                Recorded(
                    request.method,
                    request.url.path,
                    dict(request.query_params),
                    {k.lower(): v for k, v in request.headers.items()},
                    form,
                )
            )
            scripted = self._scripted.get(request.url.path)
            return scripted.popleft() if scripted else None


# --- Keepa ------------------------------------------------------------------------------


def keepa_product(
    asin: str,
    title: str | None,
    *,
    brand: str | None = None,
    amazon_cents: int = -1,
    new_cents: int = -1,
    sales_rank: int = 1000,
    upcs: list[str] | None = None,
    eans: list[str] | None = None,
) -> dict[str, Any]:
    """A Keepa product object: csv history arrays ([keepaTime, value, ...]) per price type."""
    csv: list[list[int] | None] = [None] * 4
    now = 7_000_000  # Keepa minutes; any value will do
    if amazon_cents >= 0:
        csv[0] = [now - 600, amazon_cents + 100, now, amazon_cents]
    if new_cents >= 0:
        csv[1] = [now, new_cents]
    csv[3] = [now, sales_rank]
    return {
        "asin": asin,
        "domainId": 1,
        "title": title,
        "brand": brand,
        "upcList": upcs,
        "eanList": eans,
        "csv": csv,
        "_current": [amazon_cents, new_cents, -1, sales_rank],
    }


class FakeKeepa(_Fake):
    """Keepa's `/bestsellers`, `/product` and `/token`.

    Reproduced from Keepa's documentation and official clients: the `key`/`domain`
    query parameters; `bestSellersList.asinList`; product objects with `title`, `brand`,
    `upcList`, `eanList`, `csv` histories and, with `stats`, `stats.current` (prices in
    cents, -1 for none); at most 100 ASINs per `/product`; token costs (50 per best-seller
    list, 1 per product, `/token` free); `tokensLeft`, `refillIn` (ms) and `refillRate` in
    every answer; HTTP 429 when the balance is not positive, 400 with an `error` object
    for a bad request, 402 for a plan without access; gzip-compressed bodies.

    Assumed (not documented in detail): a request is served while the balance is positive
    and may take it below zero (as the official Python client expects); the `error`
    object's `type`/`message` strings; time runs fast (`refill_seconds` stands for
    Keepa's minute).
    """

    KEY = "test-keepa-key-0123456789"

    def __init__(self) -> None:
        super().__init__()
        self.app = Starlette(
            routes=[
                Route("/bestsellers", self._bestsellers),
                Route("/product", self._product),
                Route("/token", self._token),
            ],
            middleware=[Middleware(GZipMiddleware, minimum_size=0)],
        )
        self.reset()

    def reset(self, *, tokens: int = 10_000, refill_rate: int = 1_000) -> None:
        """Forget requests, scripts and catalog; start with `tokens` tokens."""
        with self.lock:
            self.requests.clear()
            self._scripted.clear()
            self.categories: dict[str, list[str]] = {}
            self.products: dict[str, dict[str, Any]] = {}
            self.charged: Counter[str] = Counter()  # paid requests per path
            self.tokens = tokens
            self.refill_rate = refill_rate
            self.refill_seconds = 0.05
            self.refills_held = False
            self._last_refill = time.monotonic()

    def add_category(self, category_id: str, products: list[dict[str, Any]]) -> None:
        """A best-seller list of `products` (best first), whose data `/product` serves."""
        with self.lock:
            self.categories[category_id] = [p["asin"] for p in products]
            for product in products:
                self.products[product["asin"]] = product

    def set_tokens(
        self, tokens: int, *, refill_rate: int, refill_seconds: float, held: bool = False
    ) -> None:
        """Set the balance and the refill schedule (a refill every `refill_seconds`).

        `held`: no refill is credited until `release_refills()`, however long the test
        takes to get there (a slow machine must not refill a balance the test is spending);
        answers still announce the next refill as usual.
        """
        with self.lock:
            self.tokens = tokens
            self.refill_rate = refill_rate
            self.refill_seconds = refill_seconds
            self.refills_held = held
            self._last_refill = time.monotonic()

    def release_refills(self) -> None:
        """Credit the refills due since `set_tokens(held=True)`, and those to come."""
        with self.lock:
            self.refills_held = False

    def _token_fields(self) -> dict[str, int]:
        """Refill what is due, then the balance fields every answer carries."""
        now = time.monotonic()
        refills = math.floor((now - self._last_refill) / self.refill_seconds)
        if refills and not self.refills_held:
            self.tokens = min(self.tokens + refills * self.refill_rate, 60 * self.refill_rate)
            self._last_refill += refills * self.refill_seconds
        refill_in = self._last_refill + self.refill_seconds - now
        return {
            "timestamp": int(time.time() * 1000),
            "tokensLeft": self.tokens,
            "refillIn": max(1, math.ceil(refill_in * 1000)),
            "refillRate": self.refill_rate,
            "tokenFlowReduction": 0,
        }

    def _charge(self, request: Request, cost: int) -> tuple[Response | None, dict[str, int]]:
        """Check the key and the balance; take `cost` tokens. An error answer, or None."""
        with self.lock:
            if request.query_params.get("key") != self.KEY:
                return JSONResponse(
                    {"error": {"type": "invalidKey", "message": "Invalid API key."}},
                    status_code=400,
                ), {}
            fields = self._token_fields()
            if self.tokens <= 0:
                return JSONResponse(fields, status_code=429), {}
            self.tokens -= cost
            self.charged[request.url.path] += 1
            fields["tokensLeft"] = self.tokens
            fields["tokensConsumed"] = cost
            return None, fields

    async def _bestsellers(self, request: Request) -> Response:
        if (scripted := await self._record(request)) is not None:
            return scripted
        denied, fields = self._charge(request, 50)
        if denied is not None:
            return denied
        category = request.query_params.get("category", "")
        asins = self.categories.get(category)
        listing = (
            None if asins is None else {"domainId": 1, "categoryId": category, "asinList": asins}
        )
        return JSONResponse({**fields, "bestSellersList": listing})

    async def _product(self, request: Request) -> Response:
        if (scripted := await self._record(request)) is not None:
            return scripted
        asins = [a for a in request.query_params.get("asin", "").split(",") if a]
        if not asins or len(asins) > 100:
            return JSONResponse(
                {"error": {"type": "invalidParameter", "message": "asin: 1 to 100 ASINs"}},
                status_code=400,
            )
        denied, fields = self._charge(request, len(asins))
        if denied is not None:
            return denied
        with_stats = "stats" in request.query_params
        products = []
        for asin in asins:
            stored = dict(self.products.get(asin, {"asin": asin, "title": None, "csv": None}))
            current = stored.pop("_current", None)
            if with_stats and current is not None:
                stored["stats"] = {"current": current}
            products.append(stored)
        return JSONResponse({**fields, "products": products})

    async def _token(self, request: Request) -> Response:
        if (scripted := await self._record(request)) is not None:
            return scripted
        denied, fields = self._charge(request, 0)
        if denied is not None and denied.status_code != 429:
            return denied
        with self.lock:
            return JSONResponse(fields or self._token_fields())


# --- eBay -------------------------------------------------------------------------------

_item_numbers = itertools.count(110_000_000_000)


def ebay_item(
    title: str,
    seller: str,
    *,
    price: str | None = "24.99",
    feedback_score: int | None = 1500,
    feedback_percentage: str | None = "99.2",
    shipping: str | list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An itemSummary as the Browse API sends it (amounts and percentages as strings);
    `shipping` is one FIXED shipping cost in USD, or the `shippingOptions` themselves."""
    number = next(_item_numbers)
    item: dict[str, Any] = {
        "itemId": f"v1|{number}|0",
        "legacyItemId": str(number),
        "title": title,
        "condition": "New",
        "buyingOptions": ["FIXED_PRICE"],
        "itemWebUrl": f"https://www.ebay.com/itm/{number}",
        "seller": {"username": seller},
    }
    if price is not None:
        item["price"] = {"value": price, "currency": "USD"}
    if feedback_score is not None:
        item["seller"]["feedbackScore"] = feedback_score
    if feedback_percentage is not None:
        item["seller"]["feedbackPercentage"] = feedback_percentage
    if isinstance(shipping, str):
        cost = {"value": shipping, "currency": "USD"}
        item["shippingOptions"] = [{"shippingCostType": "FIXED", "shippingCost": cost}]
    elif shipping is not None:
        item["shippingOptions"] = shipping
    return item


def ebay_errors(status: int, error_id: int, message: str, **headers: str) -> Response:
    """An eBay REST error answer: `{"errors": [{"errorId", "domain", "category", ...}]}`."""
    body = {
        "errors": [
            {
                "errorId": error_id,
                "domain": "API_BROWSE",
                "category": "REQUEST",
                "message": message,
                "longMessage": message,
            }
        ]
    }
    return JSONResponse(body, status_code=status, headers=headers)


class FakeEbay(_Fake):
    """eBay's OAuth token endpoint, Browse `item_summary/search` and Analytics `rate_limit`.

    Reproduced from eBay's documentation: client credentials grant (HTTP Basic
    `client_id:client_secret`, form `grant_type=client_credentials` and the `api_scope`
    scope) answering `access_token`/`expires_in`/`token_type`, or `error`/
    `error_description` (401 `invalid_client`); Bearer tokens on the Browse API, 401 with
    errorId 1001 for an invalid or expired one; `gtin`, `q`, `limit` (at most 200) and
    `offset`; `itemSummaries` (left out when nothing matched), `total`, `next`; `price.value`
    and `seller.feedbackPercentage` as strings; errors as `{"errors": [...]}`; 429 with
    errorId 2001 when over the limit; the Analytics API's `rateLimits` for `buy.browse`.

    Assumed: keyword search finds items whose title contains at least half the words of
    `q` (eBay's best match also returns near misses, which is why the client filters);
    the server's page size may be smaller than `limit` (`page_cap`) to exercise paging;
    the marketplace header only has to be present; the daily limit is counted per fake.
    """

    CLIENT_ID = "TestApp-PRD-0123456789"
    CLIENT_SECRET = "PRD-secret-0123456789"
    SCOPE = "https://api.ebay.com/oauth/api_scope"
    TOKEN_PATH = "/identity/v1/oauth2/token"
    SEARCH_PATH = "/buy/browse/v1/item_summary/search"
    RATE_LIMIT_PATH = "/developer/analytics/v1_beta/rate_limit/"

    def __init__(self) -> None:
        super().__init__()
        self.app = Starlette(
            routes=[
                Route(self.TOKEN_PATH, self._token, methods=["POST"]),
                Route(self.SEARCH_PATH, self._search),
                Route(self.RATE_LIMIT_PATH, self._rate_limit),
            ]
        )
        self._token_numbers = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        """Forget requests, scripts, tokens and catalog."""
        with self.lock:
            self.requests.clear()
            self._scripted.clear()
            self.by_gtin: dict[str, list[dict[str, Any]]] = {}
            self.catalog: list[dict[str, Any]] = []
            self.tokens: dict[str, float] = {}  # token -> monotonic expiry
            self.token_ttl = 7200
            self.page_cap = 200
            self.daily_limit = 5000
            self.searches = 0
            self.quota_reset: datetime | None = None  # what `rate_limit` reports as `reset`

    def list_by_gtin(self, gtin: str, items: list[dict[str, Any]]) -> None:
        """Items a `gtin=` search finds."""
        with self.lock:
            self.by_gtin[gtin] = items

    def list_for_keywords(self, items: list[dict[str, Any]]) -> None:
        """Items a `q=` search can find (by the words of their titles)."""
        with self.lock:
            self.catalog.extend(items)

    def revoke_tokens(self) -> None:
        """Make every issued token invalid (the next Browse call answers 401)."""
        with self.lock:
            self.tokens.clear()

    async def _token(self, request: Request) -> Response:
        if (scripted := await self._record(request)) is not None:
            return scripted
        expected = base64.b64encode(f"{self.CLIENT_ID}:{self.CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return JSONResponse(
                {"error": "invalid_client", "error_description": "client authentication failed"},
                status_code=401,
            )
        form = await request.form()
        if form.get("grant_type") != "client_credentials":
            return JSONResponse(
                {"error": "unsupported_grant_type", "error_description": "grant type unsupported"},
                status_code=400,
            )
        if form.get("scope") != self.SCOPE:
            return JSONResponse(
                {"error": "invalid_scope", "error_description": "The requested scope is invalid"},
                status_code=400,
            )
        with self.lock:
            token = f"v^1.1#i^1#p^1#r^0#I^3#t^fake-{next(self._token_numbers)}"
            self.tokens[token] = time.monotonic() + self.token_ttl
            ttl = self.token_ttl
        return JSONResponse(
            {"access_token": token, "expires_in": ttl, "token_type": "Application Access Token"}
        )

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ")
        with self.lock:
            expiry = self.tokens.get(token)
        return header.startswith("Bearer ") and expiry is not None and expiry > time.monotonic()

    async def _search(self, request: Request) -> Response:
        if (scripted := await self._record(request)) is not None:
            return scripted
        if not self._authorized(request):
            return ebay_errors(401, 1001, "Invalid access token")
        if not request.headers.get("x-ebay-c-marketplace-id"):
            return ebay_errors(400, 12002, "The X-EBAY-C-MARKETPLACE-ID header is missing.")
        params = request.query_params
        with self.lock:
            self.searches += 1
            if self.searches > self.daily_limit:
                return ebay_errors(
                    429, 2001, "Too many requests. The request limit has been reached."
                )
            if "gtin" in params:
                found = list(self.by_gtin.get(params["gtin"], []))
            elif "q" in params:
                words = params["q"].lower().split()
                found = [
                    item
                    for item in self.catalog
                    if 2 * sum(word in item["title"].lower() for word in words) >= len(words)
                ]
            else:
                return ebay_errors(400, 12001, "A search needs q, gtin, category_ids or epid.")
            page_cap = self.page_cap
        try:
            limit = int(params.get("limit", "50"))
            offset = int(params.get("offset", "0"))
        except ValueError:
            return ebay_errors(400, 12006, "limit and offset must be integers.")
        if not 1 <= limit <= 200 or offset < 0:
            return ebay_errors(400, 12006, "limit must be 1-200 and offset at least 0.")
        page = found[offset : offset + min(limit, page_cap)]
        key = "gtin" if "gtin" in params else "q"
        here = f"{self.url}{self.SEARCH_PATH}?"
        body: dict[str, Any] = {
            "href": here + urlencode({key: params[key], "limit": limit, "offset": offset}),
            "total": len(found),
            "limit": limit,
            "offset": offset,
        }
        if page:
            body["itemSummaries"] = page
        if offset + len(page) < len(found):
            body["next"] = here + urlencode(
                {key: params[key], "limit": limit, "offset": offset + len(page)}
            )
        return JSONResponse(body)

    async def _rate_limit(self, request: Request) -> Response:
        if (scripted := await self._record(request)) is not None:
            return scripted
        if not self._authorized(request):
            return ebay_errors(401, 1001, "Invalid access token")
        with self.lock:
            used, limit, reset = self.searches, self.daily_limit, self.quota_reset
        reset = reset or (datetime.now(UTC) + timedelta(hours=5)).replace(
            minute=0, second=0, microsecond=0
        )
        rate = {
            "count": used,
            "limit": limit,
            "remaining": max(0, limit - used),
            "reset": reset.isoformat().replace("+00:00", ".000Z"),
            "timeWindow": 86400,
        }
        return JSONResponse(
            {
                "rateLimits": [
                    {
                        "apiContext": "buy",
                        "apiName": "Browse",
                        "apiVersion": "v1",
                        "resources": [{"name": "buy.browse", "rates": [rate]}],
                    }
                ]
            }
        )


@contextmanager
def running_keepa() -> Iterator[FakeKeepa]:
    """A FakeKeepa served on loopback for the block."""
    fake = FakeKeepa()
    with serve(fake.app) as url:
        fake.url = url
        yield fake


@contextmanager
def running_ebay() -> Iterator[FakeEbay]:
    """A FakeEbay served on loopback for the block."""
    fake = FakeEbay()
    with serve(fake.app) as url:
        fake.url = url
        yield fake


# --- wiring into the app under test ------------------------------------------------------


_QUICK_RETRIES = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)


def resilient_amazon(provider: AmazonProvider) -> ResilientAmazonProvider:
    """Wrap a client the way build_providers does, with quick retries for tests."""
    return ResilientAmazonProvider(
        provider, limiter=RateLimiter(None), policy=_QUICK_RETRIES, timeout=5
    )


def resilient_ebay(provider: EbayProvider) -> ResilientEbayProvider:
    """Wrap a client the way build_providers does, with quick retries for tests."""
    return ResilientEbayProvider(
        provider, limiter=RateLimiter(None), policy=_QUICK_RETRIES, timeout=5
    )


@contextmanager
def providers_of(
    app: FastAPI, *, amazon: AmazonProvider | None = None, ebay: EbayProvider | None = None
) -> Iterator[Pipeline]:
    """Let the app's runs use these providers (and check for pause/cancel often) meanwhile."""
    service: Pipeline = app.state.instance.pipeline
    saved = service.amazon, service.ebay, service.quota_check_seconds
    service.amazon = amazon or service.amazon
    service.ebay = ebay or service.ebay
    service.quota_check_seconds = 0.02
    try:
        yield service
    finally:
        service.amazon, service.ebay, service.quota_check_seconds = saved
