"""Request and response bodies of the HTTP API (Pydantic); requests refuse unknown fields."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from app.categories import MAX_CATEGORY_ID_DIGITS, parse_category_id
from app.core.pagination import Page
from app.core.text import REFUSED_CLASS, refused_character
from app.runs.margins import FEE_EXPLAINED, MARGIN_EXPLAINED
from app.tables import Role, RunPhase, RunStatus, RunTrigger

MAX_CATEGORIES_PER_PRESET = 100


# --- text ----------------------------------------------------------------------------------
# What str.strip() removes that the rule does not refuse anyway: names are stripped, so a
# name must have something else in it.
_SPACES = r" \u00a0\u1680\u2000-\u200a\u202f\u205f\u3000"
TEXT_PATTERN = f"^[^{REFUSED_CLASS}]*[^{REFUSED_CLASS}{_SPACES}][^{REFUSED_CLASS}]*$"
"""The rule as a JSON-schema pattern, so the OpenAPI refuses what the server refuses."""


class PlainText:
    """The text rule as a Pydantic annotation: `Annotated[str, StringConstraints(...),
    PLAIN_TEXT]` refuses what the rule refuses (before stripping) and says so in the
    schema."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_before_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {**handler(schema), "pattern": TEXT_PATTERN}

    @staticmethod
    def _check(value: object) -> object:
        if isinstance(value, str) and (reason := refused_character(value)):
            raise ValueError(reason)
        return value


PLAIN_TEXT = PlainText()


# One email address: no spaces, quotes, angle brackets or separators that could smuggle
# markup or more recipients into a page or a mail header. Not RFC 5322 in full: identity
# providers validate addresses, and `admin@localhost`, the local operator's, must pass.
_EMAIL_EXCLUDED = rf"{REFUSED_CLASS}{_SPACES}@<>\"'(),;:\\\[\]\s"
EMAIL_SHAPE = re.compile(f"[^{_EMAIL_EXCLUDED}]{{1,64}}@[^{_EMAIL_EXCLUDED}]{{1,255}}")
EMAIL_PATTERN = f"^{EMAIL_SHAPE.pattern}$"
MAX_EMAIL_LENGTH = 320


def email_address(value: object) -> str:
    """`value` as an email address under the text rule, stripped and lower-cased."""
    if not isinstance(value, str):
        raise ValueError("must be an email address such as ana@example.com")
    if reason := refused_character(value):
        raise ValueError(reason)
    address = value.strip().lower()
    if len(address) > MAX_EMAIL_LENGTH:
        raise ValueError(f"must be an email address of at most {MAX_EMAIL_LENGTH} characters")
    if not EMAIL_SHAPE.fullmatch(address):
        raise ValueError(
            f"is not a valid email address (one address such as ana@example.com): {address!r}"
        )
    return address


Email = Annotated[
    str,
    BeforeValidator(email_address),
    WithJsonSchema({"type": "string", "pattern": EMAIL_PATTERN, "maxLength": MAX_EMAIL_LENGTH}),
]


def _in_utc(moment: datetime) -> datetime:
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # year 1 at +01:00, year 9999 at -01:00
        raise ValueError(f"{moment.isoformat()} lies outside the calendar in UTC") from None


UtcMoment = Annotated[AwareDatetime, AfterValidator(_in_utc)]
"""A moment given with its UTC offset (a naive one is refused), converted to UTC as stored;
one that UTC cannot express is refused as well (422, never a 500)."""


class RequestModel(BaseModel):
    """Base of request bodies: an unknown or misspelt field is an error, never ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PartialUpdate(RequestModel):
    """A partial update: fields left out keep their value, and null is not a value (but in
    the fields named in NULLABLE, where null clears). The schema says so too."""

    NULLABLE: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _refuse_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            nulls = sorted(k for k, v in data.items() if v is None and k not in cls.NULLABLE)
            if nulls:
                raise ValueError(
                    f"{', '.join(nulls)} may not be null; leave a field out to keep it"
                )
        return data

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler.resolve_ref_schema(handler(schema))
        for name, field in json_schema.get("properties", {}).items():
            if name in cls.NULLABLE or "anyOf" not in field:
                continue
            options = [option for option in field.pop("anyOf") if option != {"type": "null"}]
            field.pop("default", None)
            if len(options) == 1:
                field.update(options[0])
            else:
                field["anyOf"] = options
        return json_schema


class ResponseModel(BaseModel):
    """Base of response bodies, built from ORM rows."""

    model_config = ConfigDict(from_attributes=True)


# --- health ---------------------------------------------------------------------------


class HealthResponse(ResponseModel):
    status: Literal["ok", "failing"] = Field(
        description="`failing` (with 503): this instance's run executor stopped by itself; "
        "restart the process."
    )
    version: str
    role: Literal["all", "api", "worker"] = Field(
        description="What this instance does (INSTANCE_ROLE; `collection-api worker`)."
    )
    state: Literal["running", "draining"] = Field(
        description="`draining` while it hands its runs over to other instances on shutdown."
    )
    runs_executing: int = Field(description="Runs this instance executes right now.")


class ReadinessResponse(ResponseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str] = Field(examples=[{"database": "ok", "schema": "ok"}])


# --- organizations and members -------------------------------------------------------

OrgName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), PLAIN_TEXT
]


class OrgCreate(RequestModel):
    name: OrgName = Field(examples=["Acme Research"])


class OrgResponse(ResponseModel):
    id: uuid.UUID
    name: str
    created_at: datetime


def _to_the_hundredth(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), ROUND_HALF_UP)


FEE_PERCENT_DESCRIPTION = (
    "eBay's fees as a percentage of price + shipping, 0 to 100 (rounded to two decimals), "
    "which estimated margins take off. " + FEE_EXPLAINED
)
FeePercent = Annotated[
    Decimal,
    Field(ge=0, le=100),
    AfterValidator(_to_the_hundredth),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": 100},
                {"type": "string", "pattern": r"^\s*(100(\.0*)?|[0-9]{1,2}(\.[0-9]*)?)\s*$"},
            ],
            "description": FEE_PERCENT_DESCRIPTION,
            "examples": ["13.25"],
        }
    ),
]


class OrgSettingsResponse(ResponseModel):
    expected_fee_percent: Decimal = Field(
        description="eBay's fees as a percentage of price + shipping, taken off estimated "
        "margins. A run keeps the value it was created with (`fee_percent` of the run), so "
        "changing it changes the margins of runs created afterwards only. " + FEE_EXPLAINED,
        examples=["13.25"],
    )
    margin_explained: str = Field(
        default=MARGIN_EXPLAINED, description="What an estimated margin includes, in words."
    )
    ebay_daily_call_cap: int | None = Field(
        default=None,
        description="At most this many eBay calls a day for the organization's runs (the "
        "service's eBay budget is shared by all organizations); null: no cap of its own.",
    )


class OrgSettingsUpdate(PartialUpdate):
    """A partial update: fields left out keep their value; null is not a value (but in
    `ebay_daily_call_cap`, where null removes the cap)."""

    NULLABLE = frozenset({"ebay_daily_call_cap"})

    expected_fee_percent: FeePercent | None = None
    ebay_daily_call_cap: int | None = Field(default=None, ge=1, le=10_000_000)


class MembershipInfo(ResponseModel):
    org_id: uuid.UUID
    org_name: str
    role: Role
    permissions: list[str]


class MeResponse(ResponseModel):
    user_id: uuid.UUID
    email: str
    memberships: list[MembershipInfo]


class MemberCreate(RequestModel):
    email: Email = Field(examples=["ana@example.com"])
    role: Role = Field(default=Role.MEMBER, examples=["member"])


class MemberUpdate(RequestModel):
    role: Role = Field(examples=["viewer"])


class MemberResponse(ResponseModel):
    user_id: uuid.UUID | None = Field(description="null while the invitation is pending")
    email: str
    role: Role
    status: Literal["active", "invited"]
    created_at: datetime


# --- presets ---------------------------------------------------------------------------


CategoryId = Annotated[
    str,
    BeforeValidator(parse_category_id),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "string",
                    "pattern": rf"^\s*[0-9]{{1,{MAX_CATEGORY_ID_DIGITS}}}\s*$",
                    "allOf": [{"pattern": "[1-9]"}],  # not zero
                },
                {"type": "integer", "minimum": 1, "exclusiveMaximum": 10**MAX_CATEGORY_ID_DIGITS},
            ]
        }
    ),
]


def _dedupe(values: list[str]) -> list[str]:
    unique = list(dict.fromkeys(values))
    if not unique:
        raise ValueError("must list at least one category ID")
    if len(unique) > MAX_CATEGORIES_PER_PRESET:
        raise ValueError(
            f"must list at most {MAX_CATEGORIES_PER_PRESET} distinct category IDs, "
            f"got {len(unique)}"
        )
    return unique


CategoryIds = Annotated[
    list[CategoryId],
    AfterValidator(_dedupe),
    Field(
        description="Amazon category (browse node) IDs; duplicates are removed, order is kept.",
        examples=[["172282", "541966"]],
        json_schema_extra={"minItems": 1},
    ),
]
PresetName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), PLAIN_TEXT
]


class PresetCreate(RequestModel):
    name: PresetName = Field(examples=["Electronics and computers"])
    category_ids: CategoryIds


class PresetUpdate(PartialUpdate):
    """A partial update: fields left out keep their value; null is not a value."""

    name: PresetName | None = Field(default=None, examples=["Electronics"])
    category_ids: CategoryIds | None = None


class PresetResponse(ResponseModel):
    id: uuid.UUID
    name: str
    category_ids: list[str]
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


# --- runs ------------------------------------------------------------------------------

RunName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), PLAIN_TEXT
]


class RunCreate(RequestModel):
    """Either a preset or an explicit list of category IDs, not both."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["preset_id"], "properties": {"preset_id": {"type": "string"}}},
                {"required": ["category_ids"], "properties": {"category_ids": {"type": "array"}}},
            ]
        }
    )

    preset_id: uuid.UUID | None = Field(default=None, description="Run this preset's categories.")
    category_ids: CategoryIds | None = Field(
        default=None, description="Or run these categories (same rules as a preset)."
    )
    name: RunName | None = Field(default=None, examples=["Electronics, November"])
    products_per_category: int | None = Field(
        default=None, ge=1, le=100, description="Best sellers per category (default 50)."
    )
    listings_per_product: int | None = Field(
        default=None, ge=1, le=200, description="eBay listings per product (default 20)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> RunCreate:
        if (self.preset_id is None) == (self.category_ids is None):
            raise ValueError("give exactly one of preset_id or category_ids")
        return self


class RunProgress(ResponseModel):
    categories_total: int
    categories_done: int
    products_found: int
    products_searched: int
    listings_found: int
    sellers_found: int


class RunEta(ResponseModel):
    remaining_seconds: int | None = Field(
        description="About how long the run has left; null when it cannot be estimated "
        "(paused, not started, too early to tell: `note` says which)."
    )
    finishes_at: datetime | None = Field(description="Now plus `remaining_seconds`.")
    note: str = Field(
        description="How the estimate was made, or why there is none.",
        examples=["From the pace of the last 50 eBay searches."],
    )


class RunEstimate(ResponseModel):
    """What the run still needs of the providers and when it should finish, from the
    budget as it is now (see README, "Fair share of the providers' budgets")."""

    ebay_calls: int = Field(description="eBay searches it still needs, about: one a product.")
    keepa_tokens: int | None = Field(description="Keepa tokens its Amazon phase still needs.")
    ebay_daily_limit: int | None = Field(description="Calls a day for all; null: no limit.")
    ebay_calls_left_today: int | None = Field(description="Of that limit, left today.")
    org_daily_cap: int | None = Field(description="The organization's daily cap, if any.")
    org_calls_left_today: int | None = Field(description="Left under that cap today.")
    sharing_organizations: int = Field(
        description="Other organizations whose runs wait for the calls left today (0 when "
        "those cover every run: no turns needed)."
    )
    fair_share_today: int | None = Field(
        description="While turns are needed: the calls this run can count on today."
    )
    budget_resets_at: datetime | None = Field(description="When the provider's day ends.")
    fits_today: bool = Field(description="Whether what it needs is there today.")
    finishes_at: datetime | None = Field(description="About when; null: no pace known yet.")
    note: str = Field(
        examples=[
            "About 500 eBay calls; 120 of the 5,000 eBay calls a day are left today. "
            "Not today: the eBay budget resets at 08:00 UTC; should finish at about 2026-12-06 "
            "08:40 UTC."
        ]
    )


class RunResponse(ResponseModel):
    id: uuid.UUID
    name: str
    status: RunStatus = Field(
        description="pending → running → completed | failed; pause: running → pausing → "
        "paused, resume: paused (or pausing) → running; cancel: → cancelling → cancelled. "
        "`pausing` and `cancelling` last while the provider calls in flight finish and are "
        "saved (no new one starts); once `paused` or `cancelled`, nothing about the run "
        "changes. pending, running, pausing, paused and cancelling count as active (one "
        "per organization)."
    )
    phase: RunPhase | None
    trigger: RunTrigger
    schedule_id: uuid.UUID | None
    preset_id: uuid.UUID | None = Field(
        description="The preset the run was made from (kept after the preset is deleted); "
        "null for a run of a category list."
    )
    category_ids: list[str]
    products_per_category: int
    listings_per_product: int
    progress: RunProgress
    error: str | None
    resumes_at: datetime | None = Field(
        description="While the run waits for a provider's quota (Keepa tokens, the eBay daily "
        "call budget): when it continues. null otherwise."
    )
    waiting_for: str | None = Field(
        description="While the run waits for a provider's quota: which limit, e.g. \"eBay's "
        'daily call limit (eBay reports 0 of 5000 calls left)" or "eBay\'s rate limit '
        '(HTTP 429 with Retry-After: 120 s)". null otherwise.'
    )
    created_by: uuid.UUID | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    results_purged_at: datetime | None
    elapsed_seconds: int | None = Field(
        default=None,
        description="Seconds from start to finish, or to now while the run has not finished "
        "(pauses included); null before it starts. Set by GET /collection/runs and GET "
        "/collection/runs/{id}; null in the answers of the other endpoints.",
    )
    eta: RunEta | None = Field(
        default=None,
        description="About how long the run has left, in GET /collection/runs/{id} only "
        "(null elsewhere, and once the run has finished).",
    )
    estimate: RunEstimate | None = Field(
        default=None,
        description="What it still needs of the providers and when it should finish, in "
        "the answers of POST /collection/runs and GET /collection/runs/{id} (null elsewhere, "
        "and once the run has finished).",
    )
    fee_percent: Decimal = Field(
        description="eBay's fees (% of price + shipping) its estimated margins take off: the "
        "organization's `expected_fee_percent` when the run was created, kept so that a "
        "later change of the setting does not change this run's results.",
        examples=["13.25"],
    )

    @model_validator(mode="before")
    @classmethod
    def _progress_from_row(cls, data: Any) -> Any:
        if hasattr(data, "categories_total"):  # an ORM row: gather the counters
            values = {
                name: getattr(data, name)
                for name in cls.model_fields
                if name not in ("progress", "elapsed_seconds", "eta", "estimate")  # not columns
            }
            values["progress"] = {name: getattr(data, name) for name in RunProgress.model_fields}
            return values
        return data


class SellerResponse(ResponseModel):
    rank: int
    username: str
    products: int = Field(description="Distinct collected products this seller lists.")
    listings: int
    min_price: Decimal | None
    max_price: Decimal | None
    feedback_score: int | None
    feedback_percentage: Decimal | None
    new_since_last_run: bool | None = Field(
        description="Not a seller in the run it is compared with (`compared_with_run_id`: "
        "the previous completed run of the same preset); null when there is none."
    )
    median_price: Decimal | None = Field(
        description="The median of its listings' prices; null until the run has finished."
    )
    currency: str | None = Field(
        description="ISO 4217 code of its prices and margins (those of the run's eBay "
        "marketplace).",
        examples=["USD"],
    )
    median_margin: Decimal | None = Field(
        default=None,
        description="The median estimated margin of its listings that have one (in "
        "`currency`, with the run's `fee_percent`); null until the run has finished, or "
        "when none has one. " + MARGIN_EXPLAINED,
    )


class SellerPage(Page[SellerResponse]):
    """One page of a run's ranked sellers, and the run they are compared with."""

    compared_with_run_id: uuid.UUID | None = Field(
        description="The latest completed run of the same preset created before this one "
        "(for a run of a category list: of the same list), whose sellers are not `new`; "
        "null when there is none."
    )
