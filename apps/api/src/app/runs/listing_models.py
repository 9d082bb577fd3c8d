"""Response bodies of a run's listings with their estimated margins
(GET /collection/runs/{id}/listings)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field

from app.core.pagination import Page
from app.models import ResponseModel
from app.runs.margins import MARGIN_EXPLAINED


class ListingResponse(ResponseModel):
    asin: str = Field(description="The Amazon product the listing was found for.")
    product_title: str | None = Field(description="Its Amazon title; null if not stored.")
    amazon_price: Decimal | None = Field(description="The product's Amazon price; null: unknown.")
    amazon_currency: str | None = Field(description="ISO 4217 code of `amazon_price`.")
    item_id: str = Field(description="The eBay item.")
    title: str = Field(description="The eBay listing's title.")
    price: Decimal | None = Field(description="The eBay price; null: unknown.")
    currency: str = Field(description="ISO 4217 code of `price`.", examples=["USD"])
    shipping: Decimal | None = Field(
        description="What the buyer pays for shipping: 0 when free, null when eBay does not "
        "say (calculated at checkout, or collected before shipping was recorded)."
    )
    shipping_currency: str | None = Field(description="ISO 4217 code of `shipping`.")
    estimated_fees: Decimal | None = Field(
        description="The eBay fees the estimate takes off: the run's `fee_percent` of price + "
        "shipping, rounded half up to the cent."
    )
    estimated_margin: Decimal | None = Field(
        description=MARGIN_EXPLAINED + " Null when it cannot be estimated (`margin_note`)."
    )
    margin_currency: str | None = Field(description="ISO 4217 code of `estimated_margin`.")
    margin_note: str | None = Field(
        description="Why there is no margin (no eBay or Amazon price, or prices in different "
        "currencies: no conversion is done), or what it assumed (unknown shipping counted "
        "as 0); null otherwise.",
        examples=["eBay price in EUR, Amazon price in USD: no currency conversion is done"],
    )
    username: str = Field(description="The eBay seller.")
    seller_feedback_score: int | None
    seller_feedback_percentage: Decimal | None
    url: str


class ListingPage(Page[ListingResponse]):
    """One page of a run's listings, by ASIN then eBay item id."""

    fee_percent: Decimal = Field(
        description="The run's fee % the margins take off (the organization's setting when "
        "the run was created)."
    )
