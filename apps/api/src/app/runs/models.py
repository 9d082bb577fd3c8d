"""Response bodies of what changed between runs (GET /collection/runs/{id}/changes) and of
the seller directory (GET /collection/sellers, /collection/sellers/{username})."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Literal

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


# --- the seller directory ----------------------------------------------------------------------

TREND = (
    "Against the latest completed run of the preset of its latest run and the one before: "
    "`new` in the latest but not the one before (or the preset's first run), `up` / `down` / "
    "`same` in both with a better / worse / equal rank, `gone` in the one before but not "
    "in the latest; null in neither."
)


class DirectorySellerResponse(ResponseModel):
    """A seller across the organization's completed runs (of one preset with `preset_id`)."""

    username: str
    first_seen_at: datetime = Field(description="Creation time of the first run that saw it.")
    last_seen_at: datetime = Field(description="Creation time of the latest run that saw it.")
    runs_seen: int = Field(description="Completed runs that saw it (kept after retention).")
    last_run_id: uuid.UUID = Field(description="The latest run that saw it.")
    last_preset_id: uuid.UUID | None = Field(
        description="That run's preset; null for a run of a category list."
    )
    rank: int = Field(description="Its rank in the latest run that saw it (1 = most products).")
    products: int = Field(description="Distinct products it lists in that run.")
    listings: int = Field(description="Its listings in that run.")
    trend: Literal["up", "down", "same", "new", "gone"] | None = Field(description=TREND)


class SellerRunResponse(ResponseModel):
    run_id: uuid.UUID
    run_name: str
    created_at: datetime
    rank: int | None = Field(description="1 = most products in that run.")
    products: int = Field(description="Distinct products it lists in that run.")
    listings: int
    min_price: Decimal | None
    max_price: Decimal | None
    median_price: Decimal | None
    currency: str | None = Field(description="ISO 4217 code of its prices.", examples=["USD"])


class SellerPresetHistory(DirectorySellerResponse):
    """The seller in the runs of one preset (or of one category list): the directory's
    figures in those runs, and each run whose results are kept."""

    preset_id: uuid.UUID | None = Field(description="Null: runs of a category list.")
    preset_name: str | None = Field(
        description="The preset's name now; null once deleted, or for a category list."
    )
    category_ids: list[str] = Field(description="Of the latest of these runs.")
    runs: list[SellerRunResponse] = Field(
        description="Newest first. Runs whose results retention deleted are not listed, "
        "though `runs_seen` still counts them."
    )


class ListedProductResponse(ResponseModel):
    """The Amazon best seller the listing was found for."""

    asin: str
    title: str
    price: Decimal | None = Field(description="Amazon price when the run collected it.")
    currency: str = Field(examples=["USD"])


class SellerListingResponse(ResponseModel):
    item_id: str = Field(description="The eBay item.")
    title: str
    price: Decimal | None = Field(description="eBay price.")
    currency: str = Field(examples=["USD"])
    url: str
    product: ListedProductResponse


class SellerListingsResponse(ResponseModel):
    """The seller's listings in the latest run that saw it."""

    run_id: uuid.UUID
    created_at: datetime
    results_purged: bool = Field(
        description="True when retention deleted that run's results: no listings to show."
    )
    total: int = Field(description="Its listings in that run (at most 500 are in `items`).")
    items: list[SellerListingResponse] = Field(description="In the order of the run's products.")


class SellerDetailResponse(DirectorySellerResponse):
    """A seller across all the organization's completed runs, per preset, and its current
    listings."""

    history: list[SellerPresetHistory] = Field(
        description="One entry per preset (or category list) whose runs saw it, most "
        "recently seen first."
    )
    current_listings: SellerListingsResponse
