"""Offline sample providers: deterministic, realistic best sellers and eBay listings of a
market that drifts from one market day to the next (the drift: `sample_market`)."""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from functools import cache, lru_cache
from typing import TypeVar

from app.core.clock import Clock, utcnow
from app.providers import sample_market as market
from app.providers.base import Listing, Product, gtin_check_digit

_T = TypeVar("_T")
Sleep = Callable[[float], Awaitable[None]]

SELLER_POOL_SIZE = 2000
"""Sellers shared by every product, so the same sellers turn up across categories."""
MAX_LISTINGS = 150
"""The most listings any one product has."""
DEFAULT_PRICE = Decimal("24.99")
"""Price listings are drawn around when the product has none."""
DEFAULT_MARKET_DAY_SECONDS = 86_400
"""A market day is a calendar day unless SAMPLE_MARKET_DAY_SECONDS says otherwise."""

_ZIPF_EXPONENT = 1.0
_NO_LISTINGS_SHARE = 0.06
_CENT = Decimal("0.01")
_ASIN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def stable_seed(*parts: object) -> int:
    """A 64-bit seed from `parts` that is the same in every process (unlike `hash()`)."""
    text = "\x1f".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


# --- Amazon ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Kind:
    noun: str
    low: int
    high: int
    features: tuple[str, ...]
    initials: str  # of the noun, the prefix of model numbers: "Air Fryer" -> "AF"


@dataclass(frozen=True, slots=True)
class _Theme:
    brands: tuple[str, ...]
    kinds: tuple[_Kind, ...]
    variants: tuple[str, ...]


def _kind(noun: str, low: int, high: int, *features: str) -> _Kind:
    return _Kind(noun, low, high, features, "".join(word[0] for word in noun.split()).upper())


# fmt: off
_THEMES: dict[str, _Theme] = {
    "electronics": _Theme(
        brands=("VOLTKO", "Auricle", "NexaCharge", "Lumiq", "ZENTRA", "Pixelon", "Kordex"),
        kinds=(
            _kind(
                "Wireless Earbuds", 19, 129, "Bluetooth 5.3 Headphones", "40H Playtime",
                "IPX7 Waterproof", "Deep Bass", "ENC Noise Cancelling Mic",
            ),
            _kind(
                "Portable Charger", 15, 69, "10000mAh Power Bank", "20W PD Fast Charging",
                "USB-C Input & Output", "LED Display", "Slim Battery Pack",
            ),
            _kind(
                "USB C Charger", 9, 45, "65W GaN Wall Charger", "3-Port Fast Charging Block",
                "Foldable Plug", "for iPhone 15, MacBook, iPad",
            ),
            _kind(
                "Bluetooth Speaker", 25, 149, "Portable Wireless Speaker", "360° Stereo Sound",
                "24H Playtime", "IPX7 Waterproof", "Built-in Mic",
            ),
            _kind(
                "HDMI Cable", 7, 29, "4K@120Hz 8K@60Hz", "High Speed 48Gbps", "Braided Cord",
                "6.6 ft", "Compatible with PS5, Xbox, Roku",
            ),
            _kind(
                "Wireless Mouse", 10, 59, "2.4G Silent Click", "Ergonomic Design",
                "Rechargeable", "3 Adjustable DPI", "for Laptop, PC, Mac",
            ),
            _kind(
                "Smart Plug", 9, 39, "WiFi Outlet", "Works with Alexa & Google Home",
                "Remote Control & Timer", "No Hub Required", "4 Pack",
            ),
            _kind(
                "Webcam", 25, 99, "1080P Full HD", "Built-in Stereo Microphone",
                "Auto Light Correction", "Plug and Play", "Privacy Cover",
            ),
            _kind(
                "Micro SD Card", 8, 59, "128GB microSDXC", "Up to 170MB/s", "A2 U3 V30",
                "with SD Adapter",
            ),
        ),
        variants=("Black", "White", "Midnight Blue", "Gray", "2 Pack"),
    ),
    "kitchen": _Theme(
        brands=("Cucina Prime", "HOMELUX", "Ovenly", "Saltera", "KITCHORA", "Brava & Co"),
        kinds=(
            _kind(
                "Air Fryer", 49, 179, "6 Quart", "Digital Touchscreen", "8 Cooking Presets",
                "Nonstick Dishwasher-Safe Basket", "Shake Reminder",
            ),
            _kind(
                "Coffee Maker", 29, 129, "12 Cup Programmable", "Glass Carafe",
                "Keep Warm Plate", "Brew Strength Control", "Reusable Filter",
            ),
            _kind(
                "Knife Set", 29, 149, "15 Piece", "High Carbon Stainless Steel",
                "with Wooden Block", "Built-in Sharpener", "Ultra Sharp",
            ),
            _kind(
                "Nonstick Frying Pan", 19, 69, "10 Inch", "Granite Coating", "PFOA Free",
                "Induction Compatible", "Stay-Cool Handle",
            ),
            _kind(
                "Food Storage Containers", 15, 49, "24 Piece Set", "Airtight Lids",
                "BPA Free", "Microwave, Freezer & Dishwasher Safe", "Meal Prep",
            ),
            _kind(
                "Electric Kettle", 19, 79, "1.7L", "Stainless Steel", "1500W Fast Boil",
                "Auto Shut-Off", "Boil-Dry Protection",
            ),
            _kind(
                "Cutting Board Set", 15, 45, "3 Piece", "Bamboo", "Juice Grooves",
                "Easy-Grip Handles", "Reversible",
            ),
            _kind(
                "Blender", 29, 119, "1200W Countertop", "for Shakes and Smoothies",
                "64 oz Pitcher", "Pulse & Ice Crush", "6-Blade",
            ),
        ),
        variants=("Black", "Stainless Steel", "White", "Sage Green", "Matte Black"),
    ),
    "toys": _Theme(
        brands=("Playvana", "TinyForge", "Kidoodle", "BRIXO", "Wonderhop", "Jollimo"),
        kinds=(
            _kind(
                "Building Blocks Set", 19, 79, "1,024 Pieces", "Compatible with Major Brands",
                "STEM Toy", "for Kids Ages 6-12", "Storage Box Included",
            ),
            _kind(
                "Remote Control Car", 25, 89, "1:16 Scale", "4WD Off-Road", "20 km/h",
                "2 Rechargeable Batteries", "Gift for Boys and Girls",
            ),
            _kind(
                "Magnetic Tiles", 29, 99, "100 Pieces", "3D Building Set",
                "Montessori Toy", "for Toddlers 3+", "Storage Bag",
            ),
            _kind(
                "Plush Toy", 9, 35, "12 Inch", "Soft Stuffed Animal", "Cuddly Gift",
                "for Kids and Adults", "Washable",
            ),
            _kind(
                "Jigsaw Puzzle", 9, 29, "1000 Pieces", "for Adults", "Thick Pieces",
                "Anti-Glare Finish", "Poster Included",
            ),
            _kind(
                "Card Game", 9, 29, "Family Party Game", "2-8 Players", "Ages 7+",
                "Quick to Learn", "Travel Size",
            ),
            _kind(
                "Kids Art Kit", 19, 59, "150 Piece", "Crayons, Markers & Paints",
                "Portable Case", "Ages 4-12", "Creative Gift",
            ),
            _kind(
                "STEM Robot Kit", 29, 99, "12-in-1 Solar Robot", "Educational Science Kit",
                "Ages 8-12", "190 Pieces", "Build Your Own",
            ),
        ),
        variants=("Multicolor", "Blue", "Pink", "Rainbow", "Deluxe Edition"),
    ),
    "sports": _Theme(
        brands=("Trailmark", "PEAKFIT", "Strideon", "Ironwell", "Altura Outdoor", "KINETO"),
        kinds=(
            _kind(
                "Yoga Mat", 15, 69, "1/4 Inch Thick", "Non Slip", "Eco Friendly TPE",
                "with Carrying Strap", "72 x 24 Inch",
            ),
            _kind(
                "Resistance Bands Set", 12, 39, "5 Levels", "with Handles & Door Anchor",
                "Ankle Straps", "Home Workout", "Carry Bag",
            ),
            _kind(
                "Adjustable Dumbbells", 79, 349, "25 lb Pair", "Quick Weight Change",
                "Anti-Slip Handle", "Home Gym", "with Tray",
            ),
            _kind(
                "Insulated Water Bottle", 12, 45, "32 oz", "Stainless Steel",
                "Leak Proof Straw Lid", "Keeps Cold 24 Hours", "BPA Free",
            ),
            _kind(
                "Jump Rope", 7, 25, "Tangle-Free", "Adjustable Length", "Ball Bearings",
                "Foam Handles", "for Fitness & Crossfit",
            ),
            _kind(
                "Foam Roller", 12, 39, "High Density", "Deep Tissue Massage",
                "Muscle Recovery", "13 Inch", "Textured Grid",
            ),
            _kind(
                "Camping Hammock", 19, 59, "Double", "Lightweight Nylon Parachute",
                "Tree Straps Included", "500 lb Capacity", "Portable",
            ),
            _kind(
                "Pickleball Paddle Set", 29, 119, "Fiberglass Surface", "2 Paddles 4 Balls",
                "Honeycomb Core", "USAPA Approved", "Carry Bag",
            ),
        ),
        variants=("Black", "Navy", "Purple", "Forest Green", "Gray"),
    ),
    "beauty": _Theme(
        brands=("Lumessa", "PURAVIE", "Glowry", "Velour Lab", "Botanika", "SERENNE"),
        kinds=(
            _kind(
                "Vitamin C Serum", 12, 39, "for Face", "with Hyaluronic Acid",
                "Anti Aging", "Brightening", "1 fl oz",
            ),
            _kind(
                "Ionic Hair Dryer", 29, 129, "1875W", "Fast Drying", "Diffuser & Concentrator",
                "Low Noise", "Lightweight",
            ),
            _kind(
                "Daily Moisturizer", 9, 39, "with Ceramides", "Fragrance Free",
                "for Sensitive Skin", "Non-Comedogenic", "1.7 oz",
            ),
            _kind(
                "Makeup Brush Set", 9, 29, "16 Pcs", "Premium Synthetic", "Foundation Blending",
                "with Case", "Cruelty Free",
            ),
            _kind(
                "Hair Straightener", 25, 99, "1 Inch Flat Iron", "Ceramic Tourmaline",
                "Adjustable Temp", "Dual Voltage", "Auto Shut Off",
            ),
            _kind(
                "Mineral Sunscreen", 9, 29, "SPF 50", "Broad Spectrum", "Water Resistant",
                "Reef Friendly", "3 fl oz",
            ),
            _kind(
                "Heatless Curling Rod", 7, 19, "Overnight Curls", "Satin", "No Heat",
                "with Scrunchies & Clips", "Sleep In",
            ),
        ),
        variants=("Original", "Unscented", "Travel Size", "Value Pack", "2 Pack"),
    ),
    "tools": _Theme(
        brands=("TORQWELL", "Ironbark", "Gridline Tools", "FORGEMAX", "Stanhope", "VOLTAGE PRO"),
        kinds=(
            _kind(
                "Cordless Drill", 39, 149, "20V Max", "Brushless Motor", "1/2 Inch Chuck",
                "2 Batteries & Charger", "LED Light",
            ),
            _kind(
                "Screwdriver Set", 15, 59, "142 in 1 Precision", "Magnetic Bits",
                "for Electronics Repair", "Portable Case", "S2 Steel",
            ),
            _kind(
                "Tape Measure", 9, 29, "25 Ft", "Magnetic Hook", "Auto Lock",
                "Shock Absorbent Case", "Fractional Readings",
            ),
            _kind(
                "Socket Set", 29, 149, "108 Piece", "1/4 & 3/8 Inch Drive", "SAE & Metric",
                "Quick Release Ratchet", "with Case",
            ),
            _kind(
                "Stud Finder", 15, 49, "5 in 1 Wall Scanner", "LCD Display",
                "AC Wire Detection", "Center Finding", "Battery Included",
            ),
            _kind(
                "LED Work Light", 19, 79, "5000 Lumen", "Rechargeable", "Magnetic Base",
                "IP54 Waterproof", "Portable",
            ),
            _kind(
                "Laser Level", 25, 99, "Self Leveling", "Green Cross Line", "100 Ft",
                "with Tripod", "Rotating Base",
            ),
        ),
        variants=("Yellow", "Red", "Black", "Orange", "Kit"),
    ),
    "home": _Theme(
        brands=("Nestwell", "LINORA", "Hearthside", "Duvique", "Calmora", "Woven & Oak"),
        kinds=(
            _kind(
                "Bed Sheet Set", 25, 89, "Queen Size", "1800 Thread Count", "Deep Pocket",
                "Wrinkle Free", "4 Piece",
            ),
            _kind(
                "Throw Pillow Covers", 12, 35, "18x18 Inch", "Set of 4", "Soft Velvet",
                "Decorative", "Hidden Zipper",
            ),
            _kind(
                "Blackout Curtains", 19, 59, "84 Inch Long", "2 Panels", "Thermal Insulated",
                "Grommet Top", "Noise Reducing",
            ),
            _kind(
                "LED Strip Lights", 12, 39, "50ft", "Music Sync", "App & Remote Control",
                "RGB Color Changing", "for Bedroom",
            ),
            _kind(
                "Weighted Blanket", 35, 119, "15 lbs", "60x80 Inch", "Cooling Glass Beads",
                "Breathable", "Queen Size",
            ),
            _kind(
                "Bath Towels", 19, 59, "Set of 6", "100% Cotton", "Highly Absorbent",
                "Quick Dry", "Hotel Quality",
            ),
            _kind(
                "Cool Mist Humidifier", 25, 79, "4L", "Quiet Ultrasonic", "Auto Shut-Off",
                "for Bedroom & Large Room", "Night Light",
            ),
        ),
        variants=("White", "Beige", "Dark Gray", "Navy Blue", "Sage Green"),
    ),
    "pet": _Theme(
        brands=("Pawsome", "FURBANE", "Tailwise", "Barkley & Co", "Whiskerly", "PETORA"),
        kinds=(
            _kind(
                "Dog Chew Toys", 9, 29, "for Aggressive Chewers", "Indestructible",
                "Natural Rubber", "Large Breed", "3 Pack",
            ),
            _kind(
                "No Pull Dog Harness", 15, 39, "Adjustable", "Reflective", "Easy Control Handle",
                "Soft Padded", "Medium",
            ),
            _kind(
                "Cat Litter Mat", 12, 35, "Double Layer", "Waterproof", "Urine Proof",
                "Trapping Mat", "24x17 Inch",
            ),
            _kind(
                "Pet Hair Remover", 9, 29, "Reusable", "Lint Roller",
                "for Couch, Carpet & Car Seats", "Self-Cleaning", "Portable",
            ),
            _kind(
                "Orthopedic Dog Bed", 29, 99, "Egg Crate Foam", "Removable Washable Cover",
                "Waterproof Lining", "Nonskid Bottom", "Large",
            ),
            _kind(
                "Automatic Pet Feeder", 39, 99, "5L", "Timed Dry Food Dispenser",
                "Voice Recorder", "Dual Power Supply", "for Cats & Dogs",
            ),
            _kind(
                "Cat Water Fountain", 19, 45, "2.5L", "Ultra Quiet Pump", "LED Light",
                "Replacement Filters", "BPA Free",
            ),
        ),
        variants=("Gray", "Blue", "Pink", "Black", "Brown"),
    ),
    "office": _Theme(
        brands=("Scriptly", "DESKORA", "Paperwell", "Officio", "INKLINE", "Stackwise"),
        kinds=(
            _kind(
                "Gel Pens", 7, 25, "0.5mm Fine Point", "Quick Dry Ink", "Retractable",
                "24 Pack", "Assorted Colors",
            ),
            _kind(
                "Desk Organizer", 15, 45, "with File Holder", "5 Compartments",
                "Mesh Metal", "Drawer", "Office Supplies",
            ),
            _kind(
                "Label Maker", 25, 69, "Bluetooth Portable", "with Tape", "Thermal Printer",
                "Multiple Templates", "for Home & Office",
            ),
            _kind(
                "Monitor Stand Riser", 19, 49, "Adjustable Height", "with Storage",
                "Ventilated Metal", "for Computer, Laptop", "Desk Shelf",
            ),
            _kind(
                "Paper Shredder", 39, 129, "12-Sheet Cross Cut", "P-4 Security",
                "Shreds Cards & Staples", "5 Gallon Bin", "Jam Proof",
            ),
            _kind(
                "Dry Erase Whiteboard", 19, 79, "36 x 24 Inch", "Magnetic", "Aluminum Frame",
                "with Marker Tray", "Wall Mounted",
            ),
            _kind(
                "Laptop Stand", 19, 59, "Ergonomic", "Aluminum", "Adjustable Height",
                "Foldable", "for 10-17 Inch Laptops",
            ),
        ),
        variants=("Black", "Silver", "White", "Assorted", "Rose Gold"),
    ),
    "automotive": _Theme(
        brands=("ROADMATE", "Drivora", "Motorix", "Autovance", "TRAXON", "Gearline"),
        kinds=(
            _kind(
                "Car Phone Mount", 12, 39, "Magnetic", "Dashboard & Air Vent",
                "360° Rotation", "Strong Suction", "for iPhone & Android",
            ),
            _kind(
                "Tire Inflator", 29, 89, "Portable Air Compressor", "150 PSI",
                "Digital Pressure Gauge", "Auto Shut Off", "12V DC",
            ),
            _kind(
                "Jump Starter", 49, 149, "2000A Peak", "12V Lithium", "for 8.0L Gas Engines",
                "USB Quick Charge", "LED Flashlight",
            ),
            _kind(
                "Dash Cam", 29, 119, "4K Front and Rear", "Night Vision", "G-Sensor",
                "Loop Recording", "WiFi App",
            ),
            _kind(
                "Handheld Car Vacuum", 25, 69, "Cordless", "High Power Suction", "Wet & Dry",
                "HEPA Filter", "Rechargeable",
            ),
            _kind(
                "Microfiber Cleaning Towels", 9, 29, "24 Pack", "Lint Free", "Streak Free",
                "Highly Absorbent", "12x12 Inch",
            ),
            _kind(
                "OBD2 Scanner", 19, 79, "Code Reader", "Check Engine Light",
                "Live Data & Freeze Frame", "for All OBDII Cars", "Bluetooth",
            ),
        ),
        variants=("Black", "Gray", "Red", "Universal Fit", "2 Pack"),
    ),
}
# fmt: on

# Top-level Amazon browse nodes, so the well-known categories get a fitting theme.
_KNOWN_CATEGORIES: dict[str, str] = {
    "172282": "electronics",
    "284507": "kitchen",
    "1055398": "home",
    "165793011": "toys",
    "3375251": "sports",
    "3760911": "beauty",
    "228013": "tools",
    "2619533011": "pet",
    "1064954": "office",
    "15684181": "automotive",
}
_THEME_NAMES = tuple(_THEMES)
_MODEL_SUFFIXES = ("", "", "", " Pro", " Plus", " Max", " Lite", " Mini")
_PRICE_CENTS = ("99", "99", "99", "95", "49", "97", "00")
_UPC_SYSTEM_DIGITS = "0016789"
_EAN_PREFIXES = ("400", "401", "425", "450", "490", "500", "505", "690", "693", "800", "840")


@lru_cache(maxsize=1024)
def category_theme(category_id: str) -> str:
    """The department whose vocabulary titles the products of `category_id`."""
    known = _KNOWN_CATEGORIES.get(category_id)
    if known is not None:
        return known
    return _THEME_NAMES[stable_seed("theme", category_id) % len(_THEME_NAMES)]


def _pick(rng: market.Uniform, options: Sequence[_T]) -> _T:
    # `rng.choice` without its rejection sampling: a third of the cost, bias < 2**-40.
    return options[int(rng.random() * len(options))]


def _asin(rng: random.Random) -> str:
    number = rng.getrandbits(48)
    chars = []
    for _ in range(8):
        number, digit = divmod(number, len(_ASIN_ALPHABET))
        chars.append(_ASIN_ALPHABET[digit])
    return "B0" + "".join(chars)


@cache
def _company_prefix(brand: str) -> str:
    # A brand keeps one GS1 company prefix, as a real manufacturer does.
    seed = stable_seed("gs1", brand)
    return _UPC_SYSTEM_DIGITS[seed % len(_UPC_SYSTEM_DIGITS)] + f"{seed // 10 % 100_000:05d}"


def _upc(brand: str, rng: random.Random) -> str:
    body = f"{_company_prefix(brand)}{rng.randrange(100_000):05d}"
    return body + gtin_check_digit(body)


def _ean(rng: random.Random) -> str:
    prefix = _pick(rng, _EAN_PREFIXES)
    width = 12 - len(prefix)
    body = f"{prefix}{rng.randrange(10**width):0{width}d}"
    return body + gtin_check_digit(body)


@lru_cache(maxsize=4096)
def _category_key(category_id: str) -> int:
    return stable_seed("market", category_id)


@lru_cache(maxsize=8192)
def sample_product(category_id: str, place: int, generation: int) -> Product:
    """The product holding 0-based `place` of the list of `category_id` in its tenure
    `generation`, at its list price and with the place's rank; the same in every process."""
    rng = random.Random(stable_seed("amazon", category_id, place, generation))
    theme = _THEMES[category_theme(category_id)]
    asin = _asin(rng)
    brand = _pick(rng, theme.brands)
    kind = _pick(rng, theme.kinds)
    model = f"{kind.initials}-{int(rng.random() * 990) + 10}{_pick(rng, _MODEL_SUFFIXES)}"
    picked = sorted(rng.sample(range(len(kind.features)), _pick(rng, (2, 3, 3))))
    features = ", ".join(kind.features[i] for i in picked)
    title = f"{brand} {kind.noun} {model}, {features}, {_pick(rng, theme.variants)}"
    dollars = int(rng.uniform(kind.low, kind.high))
    price = Decimal(f"{dollars}.{_pick(rng, _PRICE_CENTS)}")
    roll = rng.random()
    upcs = (_upc(brand, rng),) if roll < 0.80 else ()
    eans = (_ean(rng),) if 0.80 <= roll < 0.93 else ()
    return Product(
        asin=asin,
        title=title,
        category_id=category_id,
        sales_rank=place + 1,
        brand=brand,
        price=price,
        currency="USD",
        upcs=upcs,
        eans=eans,
    )


def _drifted_price(price: Decimal | None, factor: float) -> Decimal | None:
    """`price` with its dollars scaled by `factor` and its cents kept ($x.99 stays $y.99)."""
    if price is None:
        return None
    dollars = int(price)
    return max(1, round(dollars * factor)) + (price - dollars)


@lru_cache(maxsize=256)
def sample_best_sellers(
    category_id: str, day: int, limit: int = market.BEST_SELLER_PLACES
) -> tuple[Product, ...]:
    """The top `limit` of the list of `category_id` on market `day` (see
    `sample_market.market_day`), best first, ranked and priced for the day: the whole list
    is ranked, only its top is made into products."""
    key = _category_key(category_id)
    places = market.best_seller_places(key, day)[: max(0, limit)]
    products = []
    for rank, (place, generation) in enumerate(places, start=1):
        product = sample_product(category_id, place, generation)
        factor = market.amazon_price_factor(key, place, generation, day)
        price = _drifted_price(product.price, factor)
        products.append(replace(product, sales_rank=rank, price=price))
    return tuple(products)


class _SampleMarket:
    """What both sample providers share: simulated latency and the market day of a call."""

    def __init__(
        self,
        latency_ms: int = 0,
        *,
        market_day_seconds: int = DEFAULT_MARKET_DAY_SECONDS,
        clock: Clock = utcnow,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.latency_ms = latency_ms
        self.market_day_seconds = market_day_seconds
        self._clock = clock
        self._sleep = sleep

    async def _market_day(self, as_of: datetime | None) -> int:
        """Wait the simulated latency; the market day of `as_of` (else of now)."""
        if self.latency_ms > 0:
            await self._sleep(self.latency_ms / 1000)
        moment = as_of if as_of is not None else self._clock()
        return market.market_day(moment, self.market_day_seconds)


class SampleAmazonProvider(_SampleMarket):
    """Best sellers generated offline: the same category and market day always yield the
    same products; from day to day a few leave the list and ranks and prices move."""

    name = "sample"

    async def best_sellers(
        self, category_id: str, limit: int, *, as_of: datetime | None = None
    ) -> list[Product]:
        """The top `limit` products of `category_id` (at most the list's 100 places) on the
        market day of `as_of` (default: now), best first."""
        day = await self._market_day(as_of)
        return list(sample_best_sellers(category_id, day, limit))


# --- eBay -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SampleSeller:
    """An eBay seller of the shared sample pool."""

    username: str
    feedback_score: int
    feedback_percentage: Decimal


# fmt: off
_SHOP_WORDS = (
    "gadget", "bargain", "prime", "urban", "vintage", "rapid", "golden", "eagle", "sunny",
    "north", "coastal", "lucky", "smart", "happy", "value", "mega", "super", "tech", "home",
    "daily", "family", "star", "maple", "cedar", "river", "summit", "liberty", "pioneer",
    "discount", "wholesale", "budget", "pacific", "midwest", "harbor", "blue", "red", "fox",
    "owl", "bear", "pine", "oak", "metro", "prairie", "lakeside", "sierra", "canyon",
)
_SHOP_NOUNS = (
    "outlet", "deals", "depot", "store", "shop", "finds", "goods", "supply", "mart",
    "trading", "warehouse", "emporium", "closet", "treasures", "market", "direct", "express",
    "bazaar", "hub", "corner", "barn", "attic", "garage", "resale", "liquidators", "co",
)
_FIRST_NAMES = (
    "mike", "jen", "dave", "sarah", "chris", "amy", "tom", "lisa", "matt", "kate", "joe",
    "nina", "rob", "emma", "dan", "tina", "steve", "laura", "paul", "megan", "rick", "anna",
)
_LAST_NAMES = (
    "miller", "smith", "jones", "brown", "garcia", "wilson", "moore", "taylor", "clark",
    "lewis", "walker", "hall", "young", "king", "wright", "lopez", "hill", "green", "baker",
)
# fmt: on


def _username(rng: random.Random, business: bool) -> str:
    word, noun = rng.choice(_SHOP_WORDS), rng.choice(_SHOP_NOUNS)
    first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
    pattern = rng.randrange(3 if business else 6)
    if pattern == 0:
        return f"{word}_{noun}_{rng.randrange(1, 100)}"
    if pattern == 1:
        return f"{word}{noun}"
    if pattern == 2:
        return f"{word}.{noun}.{rng.choice(('usa', 'us', 'llc', 'inc', 'online'))}"
    if pattern == 3:
        return f"{first}.{last}{rng.randrange(1, 100)}"
    if pattern == 4:
        return f"{first}{last[0]}{rng.randrange(1955, 2006)}"
    return f"{first}_{word}_{noun}"


def _make_seller(index: int) -> SampleSeller:
    rng = random.Random(stable_seed("seller", index))
    username = _username(rng, business=index < 100)
    if rng.random() < 0.03:
        score = rng.randrange(25)  # a new account
    else:
        noise = rng.lognormvariate(0.0, 0.6)
        score = min(500_000, int(350_000 * (index + 1) ** -1.1 * noise))
    percentage = max(80.0, 100.0 - rng.expovariate(1 / 1.5))
    return SampleSeller(username, score, Decimal(f"{percentage:.1f}"))


@cache
def _seller_pool() -> tuple[tuple[SampleSeller, ...], tuple[float, ...]]:
    sellers: list[SampleSeller] = []
    taken: set[str] = set()
    for index in range(SELLER_POOL_SIZE):
        seller = _make_seller(index)
        if seller.username in taken:
            seller = SampleSeller(
                f"{seller.username}_{index}", seller.feedback_score, seller.feedback_percentage
            )
        taken.add(seller.username)
        sellers.append(seller)
    cumulative: list[float] = []
    total = 0.0
    for rank in range(1, SELLER_POOL_SIZE + 1):
        total += rank**-_ZIPF_EXPONENT
        cumulative.append(total)
    return tuple(sellers), tuple(cumulative)


def sample_seller(index: int) -> SampleSeller:
    """The seller at `index` (0 = the busiest) of the pool shared by every product."""
    return _seller_pool()[0][index]


_LISTING_SUFFIXES = (
    "",
    "",
    " - Brand New",
    " NEW SEALED",
    " - Free Shipping",
    " Fast Ship",
    " Genuine",
    " - Open Box",
)
_MAX_TITLE = 80  # eBay's limit


def _listing_title(product: Product, draws: market.Draws) -> str:
    head = product.title.split(",", 1)[0]
    choice = int(draws.random() * 4)
    if choice == 0:
        title = product.title
    elif choice == 1:
        title = f"NEW {head}"
    else:
        title = head + _pick(draws, _LISTING_SUFFIXES)
    if len(title) > _MAX_TITLE:
        title = title[:_MAX_TITLE].rsplit(" ", 1)[0].rstrip(",")
    return title


def _listing_count(rng: random.Random) -> int:
    if rng.random() < _NO_LISTINGS_SHARE:
        return 0
    return min(MAX_LISTINGS, max(1, int(rng.lognormvariate(1.6, 0.9))))


@lru_cache(maxsize=65_536)
def _seller_slots(asin: str) -> tuple[int, int]:
    """The seed of the product `asin` on eBay, and how many seller slots it has (0 for the
    6 % of products nobody sells; the listings of a day are the slots not vacant)."""
    key = stable_seed("ebay", asin)
    return key, _listing_count(random.Random(key))


class SampleEbayProvider(_SampleMarket):
    """eBay listings generated offline from one shared pool of long-tailed sellers; from
    day to day some listings end and others, mostly of other sellers, start."""

    name = "sample"

    async def search(
        self, product: Product, limit: int, *, as_of: datetime | None = None
    ) -> list[Listing]:
        """Up to `limit` listings of `product` by distinct sellers on the market day of
        `as_of` (default: now); the same for the same ASIN and day."""
        day = await self._market_day(as_of)
        sellers, cumulative = _seller_pool()
        total_weight = cumulative[-1]
        product_key, slots = _seller_slots(product.asin)
        base_price = product.price if product.price is not None else DEFAULT_PRICE
        listings: list[Listing] = []
        seen: set[int] = set()
        for slot in range(slots):
            if len(listings) >= limit:
                break
            key = market.listing_key(
                product_key, slot, market.listing_generation(product_key, slot, day)
            )
            if market.is_vacant(key):
                continue
            draws = market.Draws(key)
            title = _listing_title(product, draws)
            factor = market.listing_price_factor(key, 0.85 + 0.35 * draws.random(), day)
            seller_draws = market.Draws(market.seller_key(key))
            index = bisect.bisect_left(cumulative, seller_draws.random() * total_weight)
            while index in seen:  # one listing per seller and product: another seller's
                index = bisect.bisect_left(cumulative, seller_draws.random() * total_weight)
            seen.add(index)
            seller = sellers[index]
            number = 100_000_000_000 + market.hash64(key, index) % 900_000_000_000
            if title.endswith("Open Box"):
                factor *= 0.8
            price = max(_CENT, (base_price * Decimal(f"{factor:.3f}")).quantize(_CENT))
            shipping = "0.00" if "Free Shipping" in title else market.listing_shipping(key)
            listings.append(
                Listing(
                    item_id=f"v1|{number}|0",
                    title=title,
                    price=price,
                    currency=product.currency,
                    seller_username=seller.username,
                    seller_feedback_score=seller.feedback_score,
                    seller_feedback_percentage=seller.feedback_percentage,
                    url=f"https://www.ebay.com/itm/{number}",
                    shipping=None if shipping is None else Decimal(shipping),
                    shipping_currency=None if shipping is None else product.currency,
                )
            )
        return listings
