"""Shared pieces of the eBay tests: a client of the fake eBay, a product to look for, a
wall clock moved by hand, and the settings that point the real clients at the fakes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from app.providers.base import Product
from app.providers.ebay import EbayBrowseProvider
from tests.helpers.fake_marketplaces import FakeEbay, FakeKeepa

UPC = "012345678905"
TITLE = "VOLTKO Wireless Earbuds WE-512X, Bluetooth 5.3 Headphones, 40H Playtime, Black"


def client_for(fake: FakeEbay, http: httpx.AsyncClient, **options: Any) -> EbayBrowseProvider:
    """The real eBay client, pointed at `fake`."""
    return EbayBrowseProvider(
        client_id=FakeEbay.CLIENT_ID,
        client_secret=options.pop("client_secret", FakeEbay.CLIENT_SECRET),
        http=http,
        base_url=fake.url,
        **options,
    )


def product(title: str = TITLE, *, upcs: tuple[str, ...] = (UPC,), **fields: Any) -> Product:
    """A product to look for on eBay (by default with a UPC and a long title)."""
    return Product(
        asin=fields.pop("asin", "B0TEST0001"),
        title=title,
        category_id="172282",
        sales_rank=1,
        upcs=upcs,
        **fields,
    )


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2027, 7, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def real_settings(keepa: FakeKeepa, ebay: FakeEbay, **overrides: Any) -> dict[str, Any]:
    """Settings of the real Keepa and eBay clients, pointed at the fakes."""
    return {
        "amazon_provider": "keepa",
        "keepa_api_key": FakeKeepa.KEY,
        "keepa_api_url": keepa.url,
        "ebay_provider": "ebay",
        "ebay_client_id": FakeEbay.CLIENT_ID,
        "ebay_client_secret": FakeEbay.CLIENT_SECRET,
        "ebay_api_url": ebay.url,
        **overrides,
    }
