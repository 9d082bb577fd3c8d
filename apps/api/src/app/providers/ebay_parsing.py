"""Reading the eBay APIs' answers: listings from Browse item summaries, decimal amounts,
timestamps, eBay's `errors` detail and `Retry-After` header, and the ProviderErrors for a
malformed answer or a refused token request."""

from __future__ import annotations

import email.utils
import logging
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import httpx

from app.core.clock import utcnow
from app.providers.base import Listing, ProviderError

logger = logging.getLogger(__name__)

PROVIDER: Final = "ebay"
MAX_RETRY_AFTER: Final = timedelta(days=1)


def parse_listing(raw: object, default_currency: str) -> Listing | None:
    """A Listing from an itemSummary; None when it names no seller."""
    item = as_mapping(raw, "an itemSummary")
    item_id, title = item.get("itemId"), item.get("title")
    if not isinstance(item_id, str) or not item_id or not isinstance(title, str):
        raise malformed("an itemSummary without itemId or title")
    seller = as_mapping(item.get("seller") or {}, f"seller of {item_id}")
    username = seller.get("username")
    if not isinstance(username, str) or not username:
        logger.debug("eBay item %s names no seller; skipped", item_id)
        return None
    score = seller.get("feedbackScore")
    if score is not None and (not isinstance(score, int) or isinstance(score, bool)):
        raise malformed(f"feedbackScore of {item_id} is not an integer")
    price = as_mapping(item.get("price") or {}, f"price of {item_id}")
    currency = price.get("currency") or default_currency
    if not isinstance(currency, str):
        raise malformed(f"price.currency of {item_id} is not a string")
    url = item.get("itemWebUrl") or item.get("itemHref") or ""
    if not isinstance(url, str):
        raise malformed(f"itemWebUrl of {item_id} is not a string")
    shipping, shipping_currency = _shipping(item.get("shippingOptions"), item_id, currency)
    return Listing(
        item_id=item_id,
        title=title.strip(),
        price=_decimal(price.get("value"), f"price.value of {item_id}"),
        currency=currency,
        seller_username=username,
        seller_feedback_score=score,
        seller_feedback_percentage=_decimal(
            seller.get("feedbackPercentage"), f"feedbackPercentage of {item_id}"
        ),
        url=url,
        shipping=shipping,
        shipping_currency=shipping_currency,
    )


def _shipping(options: object, item_id: str, currency: str) -> tuple[Decimal | None, str | None]:
    """What the buyer pays for shipping, from an itemSummary's `shippingOptions`: the
    cheapest option's `shippingCost` (`{"value": "0.00", ...}` is free shipping), preferring
    those in the price's currency. (None, None) when no option has a cost: none given, or
    `CALCULATED` shipping eBay does not price without the buyer's location."""
    costs: list[tuple[bool, Decimal, str]] = []
    for index, raw in enumerate(as_list(options, f"shippingOptions of {item_id}")):
        option = as_mapping(raw, f"shippingOptions[{index}] of {item_id}")
        cost = as_mapping(option.get("shippingCost") or {}, f"shippingCost of {item_id}")
        value = _decimal(cost.get("value"), f"shippingCost.value of {item_id}")
        if value is None:
            continue
        cost_currency = cost.get("currency") or currency
        if not isinstance(cost_currency, str):
            raise malformed(f"shippingCost.currency of {item_id} is not a string")
        costs.append((cost_currency != currency, value, cost_currency))
    if not costs:
        return None, None
    _, value, cost_currency = min(costs)
    return value, cost_currency


def _decimal(value: object, what: str) -> Decimal | None:
    """eBay sends amounts and percentages as strings ("24.99", "99.5")."""
    if value is None or value == "":
        return None
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise malformed(f"{what} is not a decimal string")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise malformed(f"{what} is not a decimal string: {value!r}") from None
    if not number.is_finite():
        raise malformed(f"{what} is not a finite number: {value!r}")
    return number


def json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    """The answer's JSON object; `what` names the answer in the error."""
    try:
        body = response.json()
    except ValueError:
        raise malformed(f"{what} (HTTP {response.status_code}) is not JSON") from None
    if not isinstance(body, dict):
        raise malformed(f"{what} (HTTP {response.status_code}) is not a JSON object")
    return body


def as_mapping(value: object, what: str) -> Mapping[str, Any]:
    """`value` as a JSON object, or a malformed-answer error."""
    if not isinstance(value, dict):
        raise malformed(f"{what} is not an object")
    return value


def as_list(value: object, what: str) -> list[Any]:
    """`value` as a JSON array (empty when absent), or a malformed-answer error."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise malformed(f"{what} is not a list")
    return value


def parse_timestamp(value: str) -> datetime | None:
    """An ISO 8601 time (UTC when it names no offset), or None when it is not one."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def malformed(what: str) -> ProviderError:
    """The non-retryable error for an answer not shaped as eBay documents it."""
    return ProviderError(
        f"eBay sent a malformed response: {what}", provider=PROVIDER, retryable=False
    )


def errors_detail(response: httpx.Response) -> str:
    """`: errorId 1001: Invalid access token; ...` from eBay's `errors` array, or nothing."""
    try:
        body = response.json()
    except ValueError:
        return ""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return ""
    parts = []
    for error in errors[:3]:
        if isinstance(error, dict) and (error.get("message") or error.get("errorId")):
            parts.append(f"errorId {error.get('errorId')}: {error.get('message')}")
    return f": {'; '.join(parts)}" if parts else ""


def token_error(response: httpx.Response) -> ProviderError:
    """The error for a refused token request: retryable on 429 and 5xx, else bad credentials."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = ""
    if isinstance(body, dict) and body.get("error"):
        detail = f" {body['error']}"
        if body.get("error_description"):
            detail += f": {body['error_description']}"
    if status == httpx.codes.TOO_MANY_REQUESTS or status >= 500:
        retry_after = parse_retry_after(response, utcnow())
        return ProviderError(
            f"eBay token endpoint answered HTTP {status}{detail}",
            provider=PROVIDER,
            retryable=True,
            status_code=status,
            retry_after=retry_after.total_seconds() if retry_after is not None else None,
        )
    return ProviderError(
        f"eBay refused the client credentials (HTTP {status}{detail}); "
        "check EBAY_CLIENT_ID and EBAY_CLIENT_SECRET",
        provider=PROVIDER,
        retryable=False,
        status_code=status,
    )


def seconds_text(duration: timedelta) -> str:
    """A duration in whole seconds, as messages show it: '30 s'."""
    return f"{duration.total_seconds():.0f} s"


def parse_retry_after(response: httpx.Response, now: datetime) -> timedelta | None:
    """The Retry-After header (seconds, or an HTTP date), at most a day."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if math.isnan(seconds):
            return None
        return timedelta(seconds=min(max(0.0, seconds), MAX_RETRY_AFTER.total_seconds()))
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return min(MAX_RETRY_AFTER, max(timedelta(0), moment - now))
