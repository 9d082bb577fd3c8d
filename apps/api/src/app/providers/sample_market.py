"""How the offline sample market drifts from one market day to the next.

The sample providers would otherwise return the same catalogue forever, so consecutive runs
could show no change. Here the market moves per *market day*: `SAMPLE_MARKET_DAY_SECONDS`
long (a calendar day by default, shorter for demos and tests), numbered from the Unix epoch
(day 0 starts 1970-01-01T00:00Z). Everything below is a pure function of (day, entity)
through a seeded 64-bit hash: no global random state, the same day gives the same market in
every process, and any day is computed in O(1), without walking from day 0. A run asks for
the market of its creation time, so a run resumed days later still sees its own day.

The rates, per market day (tests/providers/test_sample_market.py measures them):

- **Best-seller lists.** A category's list has 100 places. A place keeps its product for a
  tenure of 20-60 days (the top 10 places: 60-180 days), then a new product takes it over
  (a new ASIN, title, price). About 2.5 % of a list is replaced a day (more than 7 of 100
  on 1 day in 200); after a month about 70 % of the list is new.
- **Ranks.** A product's score is its place's log-rank plus a smooth drift of at most
  +/-0.25 (new knots every 7 days): the top two never swap, a product moves about one
  place a day on average (more down the list) and stays mostly (98 %) within +/-25 % of
  its place's rank.
- **Amazon prices.** +/-4 % around the product's list price, drifting smoothly (knots every
  10 days, well under 1 % a day); cents are kept (x.99 stays x.99).
- **eBay sellers.** Each listing of a product sits in one of the product's seller slots. A
  slot keeps its listing for 8-20 days, then a new listing (a new item, usually of another
  seller) replaces it, or the slot stays empty for that tenure (1 in 10). About 7.5 % of a
  product's listings end a day and as many start, so 5-10 % of its sellers appear and
  disappear a day (a busy seller that lists again is no change).
- **eBay prices.** +/-3 % smooth drift (knots every 5 days: under 1 % on most days); every
  10-40 days a listing is repriced: its first price kept (60 %) or moved 5-15 % up or down,
  always between 0.8 and 1.25 of the product's Amazon price before the drift (x 0.8 for
  open-box listings). About 3 % of listings jump by 5-40 % on a given day.
- **eBay shipping.** A listing's shipping does not drift: 55 % ship free (and every listing
  titled "Free Shipping"), 35 % charge a flat rate of 3.99-9.99, and 10 % leave it
  unknown (calculated at checkout, as eBay's search gives no cost for those).
- Seller profiles (usernames, feedback) and currencies do not drift.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Protocol

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""Market day 0 starts here."""

BEST_SELLER_PLACES = 100
"""Places of a category's list: Amazon publishes the top 100, longer requests get these."""
HEAD_PLACES = 10
"""The top places, whose products stay longer."""
HEAD_TENURE_DAYS = (60, 180)
TENURE_DAYS = (20, 60)
"""How long a place keeps its product (shortest, longest)."""
RANK_DRIFT = 0.25
"""The most a product's log-rank score moves away from its place's."""
RANK_PERIOD_DAYS = 7
AMAZON_PRICE_DRIFT = 0.04
AMAZON_PRICE_PERIOD_DAYS = 10

LISTING_TENURE_DAYS = (8, 20)
"""How long a seller slot keeps its listing (shortest, longest)."""
VACANT_SHARE = 0.1
"""The share of slot tenures with no listing."""
LISTING_PRICE_DRIFT = 0.03
LISTING_PRICE_PERIOD_DAYS = 5
REPRICE_DAYS = (10, 40)
"""How often a listing is repriced (shortest, longest interval)."""
REPRICE_KEPT_SHARE = 0.6
REPRICE_MOVE = (0.05, 0.15)
"""A repricing that moves the price moves it by this much (smallest, largest)."""
PRICE_FACTOR_BOUNDS = (0.8, 1.25)
"""A listing's price stays within these factors of the Amazon price (before the drift)."""

_MASK = (1 << 64) - 1
# Salts that keep the hashes drawn for different purposes of one entity independent.
_LENGTH, _PHASE, _KNOT, _PLACE, _VACANT, _REPRICE = range(1, 7)
_MOVE, _RANK, _PRICE, _SELLER, _DRAW, _SHIPPING = range(7, 13)

FREE_SHIPPING_SHARE = 0.55
UNKNOWN_SHIPPING_SHARE = 0.1
SHIPPING_RATES = ("3.99", "4.99", "5.99", "6.49", "7.99", "9.99")
"""The flat shipping rates listings charge."""


def market_day(moment: datetime, day_seconds: int) -> int:
    """The market day `moment` falls in, with days of `day_seconds`: floor((t - epoch) / day)."""
    return (moment - EPOCH) // timedelta(seconds=day_seconds)


def hash64(*parts: int) -> int:
    """A well-mixed 64-bit hash of integers (splitmix64's finalizer per part); stable
    everywhere, unlike `hash()`, and far cheaper than a cryptographic hash."""
    value = 0x9E3779B97F4A7C15
    for part in parts:
        value = ((value ^ (part & _MASK)) * 0xBF58476D1CE4E5B9) & _MASK
        value ^= value >> 31
        value = (value * 0x94D049BB133111EB) & _MASK
        value ^= value >> 29
    return value


def unit(*parts: int) -> float:
    """A uniform number in [0, 1) drawn from the hash of `parts`."""
    return (hash64(*parts) >> 11) / (1 << 53)


class Uniform(Protocol):
    """A source of uniform numbers in [0, 1): `random.Random`, or `Draws`."""

    def random(self) -> float:
        """The next number."""
        ...


class Draws:
    """A deterministic stream of uniform numbers per `key` (hashes of the key and a count):
    a tenth of the cost of seeding a `random.Random`, for the few draws a listing needs."""

    __slots__ = ("_count", "_key")

    def __init__(self, key: int) -> None:
        self._key = key
        self._count = 0

    def random(self) -> float:
        """The next number, in [0, 1)."""
        self._count += 1
        return unit(self._key, _DRAW, self._count)


def smooth_noise(key: int, day: int, period: int) -> float:
    """A smooth function of `day` in [-1, 1], one per `key`: random values at knots every
    `period` days (each key's knots shifted), eased in between, so a day differs from the
    next by at most 3 / `period`."""
    knot, step = divmod(day + hash64(key, _PHASE) % period, period)
    start = 2 * unit(key, _KNOT, knot) - 1
    end = 2 * unit(key, _KNOT, knot + 1) - 1
    t = step / period
    return start + (end - start) * t * t * (3 - 2 * t)


def generation(key: int, day: int, shortest: int, longest: int) -> int:
    """Which tenure of the entity `key` `day` falls in: tenures of one length per key, drawn
    in [shortest, longest] days, starting at a phase of their own."""
    drawn = hash64(key, _LENGTH)
    length = shortest + (drawn & 0xFFFFFFFF) % (longest - shortest + 1)
    return (day + (drawn >> 32) % length) // length


# --- Amazon ---------------------------------------------------------------------------


@lru_cache(maxsize=512)
def best_seller_places(category_key: int, day: int) -> tuple[tuple[int, int], ...]:
    """The list of a category (`category_key`: its seed) on `day`, best first: each entry
    is (place, generation), the product of that place's current tenure."""
    scored: list[tuple[float, int, int]] = []
    for place in range(BEST_SELLER_PLACES):
        key = hash64(category_key, _PLACE, place)
        tenure = HEAD_TENURE_DAYS if place < HEAD_PLACES else TENURE_DAYS
        current = generation(key, day, *tenure)
        drift = smooth_noise(hash64(key, _RANK, current), day, RANK_PERIOD_DAYS)
        scored.append((math.log(place + 1) + RANK_DRIFT * drift, place, current))
    scored.sort()
    return tuple((place, current) for _, place, current in scored)


def amazon_price_factor(category_key: int, place: int, current: int, day: int) -> float:
    """What the list price of the product (place, generation) is multiplied by on `day`."""
    key = hash64(category_key, _PRICE, place, current)
    return 1 + AMAZON_PRICE_DRIFT * smooth_noise(key, day, AMAZON_PRICE_PERIOD_DAYS)


# --- eBay -----------------------------------------------------------------------------


def listing_generation(product_key: int, slot: int, day: int) -> int:
    """The tenure of a product's seller `slot` on `day`: a new listing with each."""
    return generation(hash64(product_key, slot), day, *LISTING_TENURE_DAYS)


def listing_key(product_key: int, slot: int, current: int) -> int:
    """The seed of the listing of `slot` in its tenure `current`."""
    return hash64(product_key, slot, current)


def seller_key(key: int) -> int:
    """The seed of the seller draws of the listing `key` (apart from its other draws, so
    that a redraw, when an earlier slot took the seller, changes nothing else)."""
    return hash64(key, _SELLER)


def is_vacant(key: int) -> bool:
    """Whether the slot tenure of `key` (a `listing_key`) has no listing."""
    return unit(key, _VACANT) < VACANT_SHARE


def listing_price_factor(key: int, base: float, day: int) -> float:
    """The factor of the Amazon price a listing (`key`, first priced at `base` times it)
    asks on `day`: its repriced level, then the smooth daily drift."""
    reprice = hash64(key, _REPRICE)
    period = generation(reprice, day, *REPRICE_DAYS)
    factor = base
    if unit(reprice, _MOVE, period) >= REPRICE_KEPT_SHARE:
        draw = unit(reprice, _MOVE, period, 1)
        move = REPRICE_MOVE[0] + (REPRICE_MOVE[1] - REPRICE_MOVE[0]) * abs(2 * draw - 1)
        low, high = PRICE_FACTOR_BOUNDS
        factor = base * (1 + move) if draw >= 0.5 else base * (1 - move)
        if not low <= factor <= high:  # a move out of the band goes the other way
            factor = 2 * base - factor
        factor = min(high, max(low, factor))
    drift = smooth_noise(hash64(key, _PRICE), day, LISTING_PRICE_PERIOD_DAYS)
    return factor * (1 + LISTING_PRICE_DRIFT * drift)


def listing_shipping(key: int) -> str | None:
    """What the listing `key` charges for shipping: "0.00" (free), a flat rate, or None
    (unknown: calculated at checkout)."""
    draw = unit(key, _SHIPPING)
    if draw < FREE_SHIPPING_SHARE:
        return "0.00"
    if draw < FREE_SHIPPING_SHARE + UNKNOWN_SHIPPING_SHARE:
        return None
    return SHIPPING_RATES[int(unit(key, _SHIPPING, 1) * len(SHIPPING_RATES))]
