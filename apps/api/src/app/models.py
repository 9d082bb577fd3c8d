"""Request and response bodies of the HTTP API (Pydantic); requests refuse unknown fields."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    model_validator,
)

from app.tables import FireOutcome, Role, RunPhase, RunStatus, RunTrigger

MAX_CATEGORIES_PER_PRESET = 100
MAX_CATEGORY_ID_DIGITS = 20


class RequestModel(BaseModel):
    """Base of request bodies: an unknown or misspelt field is an error, never ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ResponseModel(BaseModel):
    """Base of response bodies, built from ORM rows."""

    model_config = ConfigDict(from_attributes=True)


# --- health ---------------------------------------------------------------------------


class HealthResponse(ResponseModel):
    status: Literal["ok"] = "ok"
    version: str


class ReadinessResponse(ResponseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str] = Field(examples=[{"database": "ok", "schema": "ok"}])


# --- organizations and members -------------------------------------------------------

OrgName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class OrgCreate(RequestModel):
    name: OrgName = Field(examples=["Acme Research"])


class OrgResponse(ResponseModel):
    id: uuid.UUID
    name: str
    created_at: datetime


class MembershipInfo(ResponseModel):
    org_id: uuid.UUID
    org_name: str
    role: Role
    permissions: list[str]


class MeResponse(ResponseModel):
    user_id: uuid.UUID
    email: str
    memberships: list[MembershipInfo]


def _lower(value: str) -> str:
    return value.lower()


class MemberCreate(RequestModel):
    email: Annotated[EmailStr, AfterValidator(_lower)] = Field(examples=["ana@example.com"])
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


def _category_id(value: object) -> object:
    """Accept a browse-node ID as a JSON integer or a string of digits; keep it as a string."""
    if isinstance(value, bool):
        raise ValueError("must be a numeric category ID, got a boolean")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"must be a positive numeric category ID, got {value}")
        return str(value)
    if isinstance(value, str):
        value = value.strip()
        if not value.isascii() or not value.isdigit():
            raise ValueError(f"must be a numeric category ID (digits only), got {value!r}")
        if len(value) > MAX_CATEGORY_ID_DIGITS:
            raise ValueError(f"must have at most {MAX_CATEGORY_ID_DIGITS} digits, got {value!r}")
        return value
    raise ValueError(f"must be a numeric category ID, got {type(value).__name__}")


CategoryId = Annotated[str, BeforeValidator(_category_id)]


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
    ),
]
PresetName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class PresetCreate(RequestModel):
    name: PresetName = Field(examples=["Electronics and computers"])
    category_ids: CategoryIds


class PresetUpdate(RequestModel):
    """A partial update: fields left out keep their value; null is not a value."""

    name: PresetName | None = Field(default=None, examples=["Electronics"])
    category_ids: CategoryIds | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            nulls = sorted(key for key, value in data.items() if value is None)
            if nulls:
                raise ValueError(
                    f"{', '.join(nulls)} may not be null; leave a field out to keep it"
                )
        return data


class PresetResponse(ResponseModel):
    id: uuid.UUID
    name: str
    category_ids: list[str]
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


# --- runs ------------------------------------------------------------------------------

RunName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class RunCreate(RequestModel):
    """Either a preset or an explicit list of category IDs, not both."""

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

    @model_validator(mode="before")
    @classmethod
    def _progress_from_row(cls, data: Any) -> Any:
        if hasattr(data, "categories_total"):  # an ORM row: gather the counters
            values = {name: getattr(data, name) for name in cls.model_fields if name != "progress"}
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
        description="Not a seller in the organization's previous completed run; "
        "null when there is none."
    )


# --- schedule ---------------------------------------------------------------------------


class ScheduleUpdate(RequestModel):
    """Fields to change; those left out keep their value (a new schedule starts from the
    defaults: `0 0 1 * *`, UTC, disabled)."""

    preset_id: uuid.UUID | None = Field(
        default=None, description="Preset to collect; null detaches it (only while disabled)."
    )
    cron_expression: str | None = Field(
        default=None,
        max_length=200,
        description="Five fields (minute hour day-of-month month day-of-week) or a macro "
        "such as @monthly; Debian cron semantics.",
        examples=["0 0 1 * *"],
    )
    timezone: str | None = Field(
        default=None, max_length=64, description="IANA time zone.", examples=["Europe/Berlin"]
    )
    enabled: bool | None = None
    notify_email: bool | None = Field(
        default=None, description="Mail the admins about skipped/missed/failed fires and runs."
    )

    @model_validator(mode="before")
    @classmethod
    def _refuse_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            nulls = sorted(k for k, v in data.items() if v is None and k != "preset_id")
            if nulls:
                raise ValueError(
                    f"{', '.join(nulls)} may not be null; leave a field out to keep it"
                )
        return data


class ScheduleResponse(ResponseModel):
    id: uuid.UUID | None = Field(description="null until the schedule is first saved")
    preset_id: uuid.UUID | None
    preset_name: str | None
    cron_expression: str
    timezone: str
    description: str = Field(examples=["At 00:00 on day 1 of every month (UTC)"])
    enabled: bool
    notify_email: bool
    last_run_at: datetime | None = Field(description="due time of the latest fire")
    last_outcome: FireOutcome | None
    next_run_at: datetime | None


class FireResponse(ResponseModel):
    id: uuid.UUID
    scheduled_for: datetime = Field(description="the due time")
    fired_at: datetime
    outcome: FireOutcome
    run_id: uuid.UUID | None = Field(description="the run started, or the active run skipped for")
    detail: str | None
    manual: bool = Field(description="from POST /collection/schedule/trigger")


class PreviewResponse(ResponseModel):
    cron_expression: str
    timezone: str
    description: str
    fire_times: list[datetime] = Field(
        examples=[["2027-01-01T00:00:00+00:00", "2027-02-01T00:00:00+00:00"]]
    )
