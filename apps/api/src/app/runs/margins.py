"""Estimated margins: what a listing's sale would leave over the Amazon price of its product.

One definition, used by the listings API, the CSV, the pages and each seller's median:

    margin = eBay price + shipping charged to the buyer
             - eBay fees (the run's fee % of price + shipping, rounded half up to the cent)
             - the Amazon price of the product

It is an estimate for comparing listings, not a profit: it leaves out taxes, what shipping
costs the seller, eBay's fixed per-order fee, promoted-listing fees, returns and Amazon's
own shipping. Unknown shipping counts as 0 (the note says so). No currency is converted: a
listing priced in another currency than its product has no margin, and says why.

The arithmetic is in whole cents, so Python (a listing's margin) and SQL (a seller's
median, `margin_cents_sql`) give the same cent on SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

MARGIN_EXPLAINED = (
    "Estimated margin = eBay price + shipping charged to the buyer - eBay fees (the run's "
    "fee % of price + shipping) - the Amazon price of the product. It leaves out taxes, what "
    "shipping costs the seller, eBay's fixed per-order fee, returns and other costs; "
    "unknown shipping counts as 0. Prices in different currencies are not converted: such a "
    "listing has no margin."
)
FEE_EXPLAINED = (
    "The default, 13.25 %, is eBay's final value fee for most categories on ebay.com "
    "(charged on price + shipping); raise it for categories eBay charges more, or to "
    "cover other costs."
)

UNKNOWN_SHIPPING = "shipping unknown: counted as 0"
NO_EBAY_PRICE = "no eBay price"
NO_AMAZON_PRICE = "no Amazon price"


@dataclass(frozen=True, slots=True)
class Margin:
    """A listing's estimated margin in `currency`, or None with the reason in `note`; a
    margin can carry a note too (what was assumed)."""

    value: Decimal | None
    currency: str | None
    note: str | None
    fees: Decimal | None = None
    """The eBay fees the estimate takes off."""


def cents(amount: Decimal) -> int:
    """An amount of money (stored to the cent) in whole cents."""
    return int(amount.scaleb(2).to_integral_value())


def basis_points(fee_percent: Decimal) -> int:
    """A fee percentage (two decimals) in hundredths of a percent: 13.25 % is 1325."""
    return cents(fee_percent)


def fee_cents(revenue_cents: int, fee_bp: int) -> int:
    """The fee on a non-negative revenue, rounded half up to the cent."""
    return (revenue_cents * fee_bp + 5_000) // 10_000


def estimate(
    *,
    price: Decimal | None,
    currency: str,
    shipping: Decimal | None,
    shipping_currency: str | None,
    amazon_price: Decimal | None,
    amazon_currency: str | None,
    fee_percent: Decimal,
) -> Margin:
    """The estimated margin of a listing priced `price` (+ `shipping`) whose product costs
    `amazon_price` on Amazon, with eBay taking `fee_percent`."""
    if price is None or price < 0:
        return Margin(None, None, NO_EBAY_PRICE)
    if amazon_price is None or amazon_currency is None:
        return Margin(None, None, NO_AMAZON_PRICE)
    if currency != amazon_currency:
        return Margin(
            None,
            None,
            f"eBay price in {currency}, Amazon price in {amazon_currency}: "
            "no currency conversion is done",
        )
    note = None
    if shipping is None or shipping < 0:
        shipping_cents, note = 0, UNKNOWN_SHIPPING
    elif shipping_currency != currency:
        return Margin(
            None,
            None,
            f"shipping in {shipping_currency}, price in {currency}: no currency conversion is done",
        )
    else:
        shipping_cents = cents(shipping)
    revenue = cents(price) + shipping_cents
    fees = fee_cents(revenue, basis_points(fee_percent))
    margin = revenue - fees - cents(amazon_price)
    return Margin(Decimal(margin).scaleb(-2), currency, note, Decimal(fees).scaleb(-2))


def _cents_sql(amount: Any) -> sa.ColumnElement[int]:
    # round() first: SQLite keeps NUMERIC columns as floats (10.99 * 100 = 1098.999...).
    return sa.cast(sa.func.round(amount * 100), sa.BigInteger)


def margin_cents_sql(
    *,
    price: Any,
    currency: Any,
    shipping: Any,
    shipping_currency: Any,
    amazon_price: Any,
    amazon_currency: Any,
    fee_bp: int,
) -> sa.ColumnElement[Any]:
    """`estimate` as a SQL expression of columns, in whole cents; NULL where `estimate`
    gives no margin. Portable: integer arithmetic only (the revenue is never negative, so
    integer division rounds as `fee_cents` does)."""
    shipping_cents = sa.case((shipping >= 0, _cents_sql(shipping)), else_=0)
    revenue = _cents_sql(price) + shipping_cents
    fees = (revenue * fee_bp + 5_000) // 10_000
    has_margin = sa.and_(
        price >= 0,
        amazon_price.is_not(None),
        currency == amazon_currency,
        sa.or_(shipping.is_(None), shipping < 0, shipping_currency == currency),
    )
    return sa.case((has_margin, revenue - fees - _cents_sql(amazon_price)), else_=sa.null())
