"""Marketplace data as the rows of a run's results.

Marketplace data is not trusted to fit the columns: free text is shortened and a number out
of range is stored as unknown, instead of the database refusing the row.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from app.providers.base import Listing, Product
from app.tables import BRAND_LENGTH, RunCategory, RunProduct

INT4_MAX = 2**31 - 1
PRICE_LIMIT = Decimal(10) ** 10  # Numeric(12, 2)
CENT = Decimal("0.01")


def text(value: str, length: int) -> str:
    return value if len(value) <= length else value[: length - 1] + "…"


def price(value: Decimal | None) -> Decimal | None:
    """A price to the cent; None for what is not one (a negative price, too)."""
    if value is None or not value.is_finite() or not 0 <= value < PRICE_LIMIT:
        return None
    return value.quantize(CENT)


def percentage(value: Decimal | None) -> Decimal | None:
    if value is None or not value.is_finite() or not 0 <= value <= 100:
        return None
    return value.quantize(CENT)


def count(value: int | None) -> int | None:
    return value if value is not None and 0 <= value <= INT4_MAX else None


def product_row(category: RunCategory, product: Product) -> dict[str, Any]:
    return {
        "run_id": category.run_id,
        "asin": product.asin,
        "category_id": category.category_id,
        "category_position": category.position,
        "sales_rank": min(max(product.sales_rank, 0), INT4_MAX),
        "title": product.title,
        "brand": text(product.brand, BRAND_LENGTH) if product.brand is not None else None,
        "price": price(product.price),
        "currency": product.currency[:3],
        "upcs": list(product.upcs),
        "eans": list(product.eans),
    }


def as_product(row: RunProduct) -> Product:
    return Product(
        asin=row.asin,
        title=row.title,
        category_id=row.category_id,
        sales_rank=row.sales_rank,
        brand=row.brand,
        price=row.price,
        currency=row.currency,
        upcs=tuple(row.upcs),
        eans=tuple(row.eans),
    )


def listing_row(product: RunProduct, listing: Listing) -> dict[str, Any]:
    return {
        "run_id": product.run_id,
        "asin": product.asin,
        "item_id": listing.item_id,
        "title": listing.title,
        "price": price(listing.price),
        "currency": listing.currency[:3],
        "seller_username": listing.seller_username,
        "seller_feedback_score": count(listing.seller_feedback_score),
        "seller_feedback_percentage": percentage(listing.seller_feedback_percentage),
        "url": listing.url,
        **shipping(listing),
    }


def shipping(listing: Listing) -> dict[str, Any]:
    """The listing's shipping and its currency (that of the price when not given); both
    None when unknown."""
    cost = price(listing.shipping)
    if cost is None:
        return {"shipping": None, "shipping_currency": None}
    return {
        "shipping": cost,
        "shipping_currency": (listing.shipping_currency or listing.currency)[:3],
    }
