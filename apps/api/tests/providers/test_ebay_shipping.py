"""Shipping from the Browse API's item summaries (`shippingOptions[].shippingCost`): free,
priced, unknown (absent, or calculated without a cost), several options, and answers not
shaped as documented; and the row a run stores of it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from app.providers.base import Listing, ProviderError
from app.providers.ebay_parsing import parse_listing
from app.runs import rows
from app.tables import RunProduct
from tests.helpers.ebay import UPC, client_for, product
from tests.helpers.fake_marketplaces import FakeEbay, ebay_item


def _option(value: str | None, currency: str = "USD", kind: str = "FIXED") -> dict[str, Any]:
    option: dict[str, Any] = {"shippingCostType": kind}
    if value is not None:
        option["shippingCost"] = {"value": value, "currency": currency}
    return option


async def test_free_priced_and_unknown_shipping_through_the_client(
    ebay: FakeEbay, http: httpx.AsyncClient
) -> None:
    ebay.list_by_gtin(
        UPC,
        [
            ebay_item("Earbuds", "free_ship", shipping="0.00"),
            ebay_item("Earbuds", "paid_ship", shipping="5.49"),
            ebay_item("Earbuds", "no_options"),
            ebay_item("Earbuds", "calculated", shipping=[_option(None, kind="CALCULATED")]),
        ],
    )
    listings = await client_for(ebay, http).search(product(), 20)

    shipping = {x.seller_username: (x.shipping, x.shipping_currency) for x in listings}
    assert shipping == {
        "free_ship": (Decimal("0.00"), "USD"),
        "paid_ship": (Decimal("5.49"), "USD"),
        "no_options": (None, None),
        "calculated": (None, None),
    }


def _summary(**fields: Any) -> dict[str, Any]:
    return {
        "itemId": "v1|1|0",
        "title": "Earbuds",
        "price": {"value": "20.00", "currency": "EUR"},
        "seller": {"username": "s"},
        **fields,
    }


def test_the_cheapest_option_in_the_price_currency_is_the_shipping() -> None:
    options = [_option("7.00", "EUR"), _option("4.50", "EUR"), _option("1.00", "GBP")]
    listing = parse_listing(_summary(shippingOptions=options), "USD")
    assert listing is not None
    assert (listing.shipping, listing.shipping_currency) == (Decimal("4.50"), "EUR")


def test_an_option_in_another_currency_only_is_kept_with_its_currency() -> None:
    listing = parse_listing(_summary(shippingOptions=[_option("3.00", "GBP")]), "USD")
    assert listing is not None
    assert (listing.shipping, listing.shipping_currency) == (Decimal("3.00"), "GBP")


def test_a_cost_without_currency_is_in_the_price_currency() -> None:
    options = [{"shippingCost": {"value": "2.00"}}]
    listing = parse_listing(_summary(shippingOptions=options), "USD")
    assert listing is not None
    assert (listing.shipping, listing.shipping_currency) == (Decimal("2.00"), "EUR")


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ("free", "shippingOptions of v1|1|0 is not a list"),
        (["free"], "shippingOptions[0] of v1|1|0 is not an object"),
        ([{"shippingCost": "0.00"}], "shippingCost of v1|1|0 is not an object"),
        ([{"shippingCost": {"value": "free"}}], "shippingCost.value of v1|1|0 is not a decimal"),
        ([{"shippingCost": {"value": "1", "currency": 840}}], "shippingCost.currency of v1|1|0"),
    ],
)
def test_malformed_shipping_options_are_a_malformed_answer(options: Any, complaint: str) -> None:
    with pytest.raises(ProviderError, match="malformed") as caught:
        parse_listing(_summary(shippingOptions=options), "USD")
    assert complaint in str(caught.value)
    assert caught.value.retryable is False


def _row(shipping: Decimal | None, currency: str | None) -> dict[str, Any]:
    listing = Listing(
        item_id="v1|1|0",
        title="t",
        price=Decimal("10.00"),
        currency="USD",
        seller_username="s",
        seller_feedback_score=None,
        seller_feedback_percentage=None,
        url="https://www.ebay.com/itm/1",
        shipping=shipping,
        shipping_currency=currency,
    )
    product_row = RunProduct(run_id=None, asin="B1")
    return rows.listing_row(product_row, listing)


@pytest.mark.parametrize(
    ("shipping", "currency", "stored"),
    [
        (Decimal("0"), "USD", (Decimal("0.00"), "USD")),
        (Decimal("4.999"), None, (Decimal("5.00"), "USD")),  # the price's currency
        (None, "USD", (None, None)),
        (Decimal("-1"), "USD", (None, None)),  # not a shipping cost: unknown
        (Decimal("1e12"), "USD", (None, None)),  # does not fit the column
    ],
)
def test_the_stored_row_keeps_shipping_to_the_cent_or_as_unknown(
    shipping: Decimal | None, currency: str | None, stored: tuple[Any, Any]
) -> None:
    row = _row(shipping, currency)
    assert (row["shipping"], row["shipping_currency"]) == stored
