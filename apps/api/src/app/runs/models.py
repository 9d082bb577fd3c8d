"""Response bodies of what changed between runs (GET /collection/runs/{id}/changes)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from pydantic import Field

from app.core.pagination import Page
from app.models import ResponseModel


class SellerChangeResponse(ResponseModel):
    username: str
    rank: int | None = Field(description="In this run; null for a seller that went.")
    products: int | None = Field(description="Distinct products it lists in this run.")
    listings: int | None
    against_rank: int | None = Field(description="In the run compared with; null for a new seller.")
    against_products: int | None
    against_listings: int | None
    rank_change: int | None = Field(
        description="Places climbed since the run compared with (negative: fallen); null "
        "unless the seller is in both runs."
    )
    products_change: int | None = Field(
        description="Products listed now minus then; null unless the seller is in both runs."
    )


class PriceChangeResponse(ResponseModel):
    asin: str
    item_id: str = Field(description="The eBay item, listed for this product in both runs.")
    username: str = Field(description="Its seller in this run.")
    title: str
    old_price: Decimal = Field(description="In the run compared with.")
    new_price: Decimal
    change: Decimal = Field(description="new_price - old_price.")
    currency: str = Field(description="ISO 4217 code of both prices.", examples=["USD"])


class ChangesSummary(ResponseModel):
    new_sellers: int
    gone_sellers: int
    movers: int = Field(description="Sellers in both runs whose rank or product count changed.")
    unchanged_sellers: int = Field(description="Sellers in both runs with the same rank and count.")
    price_changes: int


class RunChanges(ResponseModel):
    """The changes of a run since another. Without `section`, the first page of every
    section and the summary; with `section`, that section's page only (the others null)."""

    run_id: uuid.UUID
    against_run_id: uuid.UUID
    against_run_name: str
    against_created_at: datetime
    summary: ChangesSummary | None = Field(description="Null when one section is asked for.")
    new_sellers: Page[SellerChangeResponse] | None = Field(
        description="In this run, not in the other, by rank in this run."
    )
    gone_sellers: Page[SellerChangeResponse] | None = Field(
        description="In the other run, not in this one, by rank in the other."
    )
    movers: Page[SellerChangeResponse] | None = Field(
        description="In both, rank or product count changed; most places moved first."
    )
    price_changes: Page[PriceChangeResponse] | None = Field(
        description="Listings in both with a different price; largest relative change first."
    )
