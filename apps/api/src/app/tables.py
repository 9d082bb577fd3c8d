"""SQLAlchemy tables: one definition that runs unchanged on SQLite and PostgreSQL (those of
the seller directory are in app.directory_tables)."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, validates

from app.core.clock import utcnow

# The enumerations live in app.enums; importing them from here keeps working.
from app.enums import (
    ACTIVE_RUN_PREDICATE as ACTIVE_RUN_PREDICATE,
    ACTIVE_RUN_STATUSES as ACTIVE_RUN_STATUSES,
    QUEUED_RUN_PREDICATE as QUEUED_RUN_PREDICATE,
    FireOutcome as FireOutcome,
    OverlapPolicy as OverlapPolicy,
    Role as Role,
    RunPhase as RunPhase,
    RunStatus as RunStatus,
    RunTrigger as RunTrigger,
)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    PostgreSQL stores `timestamptz`; SQLite has no time zones, so values are stored as
    naive UTC and made aware again on the way out. Naive input is refused: it is a bug.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given; use an aware UTC datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


def _enum(enum_cls: type[enum.StrEnum], name: str) -> sa.Enum:
    """A string column limited to an enum's values, by a named CHECK constraint."""
    return sa.Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


def _partial(where: sa.TextClause) -> dict[str, Any]:
    """The options of a partial index (`WHERE where`), the same on both databases."""
    return {"sqlite_where": where, "postgresql_where": where}


NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base carrying the portable type map and constraint naming."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        uuid.UUID: sa.Uuid(),
        dict[str, Any]: JSONType,
        list[str]: JSONType,
    }


class OrgOwned:
    """Mixin of tables whose rows belong to one organization (deleted with it).

    No index of its own: each such table leads a composite index with `org_id`.
    """

    org_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("organizations.id", ondelete="CASCADE"))


FEE_PERCENT = sa.Numeric(5, 2)
DEFAULT_FEE_PERCENT = Decimal("13.25")
"""eBay's final value fee for most categories on ebay.com (its fixed per-order fee aside)."""


class Organization(Base):
    """A tenant: every preset, run and schedule belongs to one."""

    __tablename__ = "organizations"
    __table_args__ = (
        sa.CheckConstraint(
            "expected_fee_percent >= 0 AND expected_fee_percent <= 100", name="fee_percent_range"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expected_fee_percent: Mapped[Decimal] = mapped_column(
        FEE_PERCENT,
        default=DEFAULT_FEE_PERCENT,
        server_default=str(DEFAULT_FEE_PERCENT),
        comment="eBay fees as a % of price + shipping, for estimated margins; runs copy it",
    )


class User(Base):
    """A person, keyed by the identity provider's `sub`; provisioned on first valid token."""

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Membership(Base):
    """A user's role in one organization."""

    __tablename__ = "memberships"

    org_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Invitation(OrgOwned, Base):
    """A membership waiting for its user's first sign-in, matched by email."""

    __tablename__ = "invitations"
    __table_args__ = (sa.UniqueConstraint("org_id", "email"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(sa.String(320), index=True)
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    invited_by: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CategoryPreset(OrgOwned, Base):
    """A named list of Amazon category (browse node) IDs, owned by an organization."""

    __tablename__ = "amazon_category_presets"
    __table_args__ = (
        sa.UniqueConstraint("org_id", "name_key"),
        sa.Index("ix_amazon_category_presets_org_created", "org_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(sa.String(100))
    name_key: Mapped[str] = mapped_column(
        sa.String(300), comment="the name case-folded: unique per organization"
    )
    category_ids: Mapped[list[str]]
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @validates("name")
    def _set_name_key(self, _key: str, name: str) -> str:
        # Python's casefold, not SQL's lower (ASCII-only on SQLite): "Straße" = "STRASSE".
        self.name_key = name.casefold()
        return name


class CollectionRun(OrgOwned, Base):
    """One collection run: Amazon best sellers of some categories, then their eBay sellers."""

    __tablename__ = "collection_runs"
    __table_args__ = (
        sa.Index("ix_collection_runs_org_created", "org_id", "created_at", "id"),
        # At most one active (pending to paused) run per organization, enforced by the database:
        # this is what makes "skip if a run is active" atomic with creating a run.
        sa.Index(
            "uq_collection_runs_one_active_per_org",
            "org_id",
            unique=True,
            **_partial(ACTIVE_RUN_PREDICATE),
        ),
        sa.Index("ix_collection_runs_status_lease", "status", "lease_expires_at"),
        sa.Index("ix_collection_runs_org_preset_created", "org_id", "preset_id", "created_at"),
        # At most one queued run per schedule (overlap policy buffer_one).
        sa.Index(
            "uq_collection_runs_one_queued_per_schedule",
            "schedule_id",
            unique=True,
            **_partial(QUEUED_RUN_PREDICATE),
        ),
        sa.CheckConstraint("fee_percent >= 0 AND fee_percent <= 100", name="fee_percent_range"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(sa.String(200))
    status: Mapped[RunStatus] = mapped_column(
        _enum(RunStatus, "run_status"), default=RunStatus.PENDING
    )
    phase: Mapped[RunPhase | None] = mapped_column(_enum(RunPhase, "run_phase"), default=None)
    trigger: Mapped[RunTrigger] = mapped_column(
        _enum(RunTrigger, "run_trigger"), default=RunTrigger.MANUAL
    )
    schedule_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("collection_schedules.id", ondelete="SET NULL"), default=None
    )
    preset_id: Mapped[uuid.UUID | None] = mapped_column(
        default=None,
        comment="the preset the run was made from (kept after the preset is deleted)",
    )
    category_ids: Mapped[list[str]]
    products_per_category: Mapped[int]
    listings_per_product: Mapped[int]
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL"), comment="NULL for system (scheduled) runs"
    )
    error: Mapped[str | None] = mapped_column(sa.Text, default=None)

    categories_total: Mapped[int] = mapped_column(default=0)
    categories_done: Mapped[int] = mapped_column(default=0)
    products_found: Mapped[int] = mapped_column(default=0)
    products_searched: Mapped[int] = mapped_column(default=0)
    listings_found: Mapped[int] = mapped_column(default=0)
    sellers_found: Mapped[int] = mapped_column(default=0)

    lease_owner: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    resumes_at: Mapped[datetime | None] = mapped_column(
        default=None, comment="while waiting for provider quota: when the run continues"
    )
    waiting_for: Mapped[str | None] = mapped_column(
        sa.String(300), default=None, comment="while waiting for provider quota: which limit"
    )

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    results_purged_at: Mapped[datetime | None] = mapped_column(default=None)
    directory_recorded_at: Mapped[datetime | None] = mapped_column(
        default=None, comment="when its sellers were added to the seller directory (once)"
    )
    scheduled_for: Mapped[datetime | None] = mapped_column(comment="a backfill run's due time")
    fee_percent: Mapped[Decimal] = mapped_column(
        FEE_PERCENT,
        default=DEFAULT_FEE_PERCENT,
        server_default=str(DEFAULT_FEE_PERCENT),
        comment="the organization's expected fee % when the run was created: its margins' fees",
    )


class RunCategory(Base):
    """A category of a run; `done_at` is the Amazon phase's checkpoint."""

    __tablename__ = "run_categories"

    run_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("collection_runs.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(primary_key=True)
    category_id: Mapped[str] = mapped_column(sa.String(20))
    products_found: Mapped[int] = mapped_column(default=0)
    done_at: Mapped[datetime | None] = mapped_column(default=None)


PRICE = sa.Numeric(12, 2)
BRAND_LENGTH = 200


class RunProduct(Base):
    """A best seller collected by a run; `searched_at` is the eBay phase's checkpoint."""

    __tablename__ = "run_products"
    __table_args__ = (
        sa.Index("ix_run_products_run_order", "run_id", "category_position", "sales_rank"),
    )

    run_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("collection_runs.id", ondelete="CASCADE"), primary_key=True
    )
    asin: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    category_id: Mapped[str] = mapped_column(sa.String(20))
    category_position: Mapped[int]
    sales_rank: Mapped[int]
    title: Mapped[str] = mapped_column(sa.Text)
    brand: Mapped[str | None] = mapped_column(sa.String(BRAND_LENGTH))
    price: Mapped[Decimal | None] = mapped_column(PRICE)
    currency: Mapped[str] = mapped_column(sa.String(3))
    upcs: Mapped[list[str]]
    eans: Mapped[list[str]]
    listings_found: Mapped[int] = mapped_column(default=0)
    searched_at: Mapped[datetime | None] = mapped_column(default=None)


class RunListing(Base):
    """An eBay listing of a run's product."""

    __tablename__ = "run_listings"
    __table_args__ = (  # a seller's listings in key order: one page of them reads one range
        sa.Index("ix_run_listings_run_seller", "run_id", "seller_username", "asin", "item_id"),
    )

    run_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("collection_runs.id", ondelete="CASCADE"), primary_key=True
    )
    asin: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    item_id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    title: Mapped[str] = mapped_column(sa.Text)
    price: Mapped[Decimal | None] = mapped_column(PRICE)
    currency: Mapped[str] = mapped_column(sa.String(3))
    seller_username: Mapped[str] = mapped_column(sa.String(100))
    seller_feedback_score: Mapped[int | None]
    seller_feedback_percentage: Mapped[Decimal | None] = mapped_column(sa.Numeric(5, 2))
    url: Mapped[str] = mapped_column(sa.Text)
    shipping: Mapped[Decimal | None] = mapped_column(
        PRICE, default=None, comment="charged to the buyer; 0: free; NULL: unknown"
    )
    shipping_currency: Mapped[str | None] = mapped_column(sa.String(3), default=None)


class RunSeller(Base):
    """A distinct eBay seller found by a run, with its figures in the run.

    Each eBay checkpoint (one product's listings) adds to the figures of the sellers it
    found, in the checkpoint's transaction, so they are always those of the listings
    written. `rank` and `median_price` need every listing: they are set when the run
    finishes (completed or failed); until then they are NULL and a page computes ranks
    from these rows, never from the listings.
    """

    __tablename__ = "run_sellers"

    run_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("collection_runs.id", ondelete="CASCADE"), primary_key=True
    )
    username: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    products: Mapped[int] = mapped_column(default=0, comment="distinct products it lists")
    listings: Mapped[int] = mapped_column(default=0)
    min_price: Mapped[Decimal | None] = mapped_column(PRICE, default=None)
    max_price: Mapped[Decimal | None] = mapped_column(PRICE, default=None)
    median_price: Mapped[Decimal | None] = mapped_column(
        PRICE, default=None, comment="set when the run finishes"
    )
    currency: Mapped[str | None] = mapped_column(
        sa.String(3), default=None, comment="of its listings' prices (one eBay marketplace)"
    )
    feedback_score: Mapped[int | None] = mapped_column(default=None)
    feedback_percentage: Mapped[Decimal | None] = mapped_column(sa.Numeric(5, 2), default=None)
    rank: Mapped[int | None] = mapped_column(
        default=None, comment="1 = most products; set when the run finishes"
    )
    median_margin: Mapped[Decimal | None] = mapped_column(
        PRICE, default=None, comment="of its listings' estimated margins (in `currency`)"
    )


# The ranking's order (most products, then listings, then name): a page is a range of it.
sa.Index(
    "ix_run_sellers_ranking",
    RunSeller.run_id,
    RunSeller.products.desc(),
    RunSeller.listings.desc(),
    RunSeller.username,
)


DEFAULT_CRON_EXPRESSION = "0 0 1 * *"


class CollectionSchedule(OrgOwned, Base):
    """A cron schedule of collection runs of one preset; an organization has several, one
    of them its default (the one `/collection/schedule` shows and changes).

    The database is the source of truth: `next_run_at` is the next due time (jitter
    included), and the scheduler of every replica reads due schedules from here.
    """

    __tablename__ = "collection_schedules"
    __table_args__ = (
        sa.Index("ix_collection_schedules_due", "next_run_at", **_partial(sa.text("enabled"))),
        sa.Index(
            "uq_collection_schedules_one_default_per_org",
            "org_id",
            unique=True,
            **_partial(sa.text("is_default")),
        ),
        sa.Index("ix_collection_schedules_org_id_created_at", "org_id", "created_at", "id"),
        sa.CheckConstraint("remaining_runs >= 0", name="remaining_runs_not_negative"),
        sa.CheckConstraint(
            "jitter_seconds >= 0 AND jitter_seconds <= 3600", name="jitter_seconds_range"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    preset_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("amazon_category_presets.id", ondelete="SET NULL"), default=None
    )
    cron_expression: Mapped[str] = mapped_column(
        sa.String(200), default=DEFAULT_CRON_EXPRESSION, server_default=DEFAULT_CRON_EXPRESSION
    )
    timezone: Mapped[str] = mapped_column(sa.String(64), default="UTC", server_default="UTC")
    enabled: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    notify_email: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    last_run_at: Mapped[datetime | None] = mapped_column(
        default=None, comment="due time of the latest fire, whatever its outcome"
    )
    last_outcome: Mapped[FireOutcome | None] = mapped_column(
        _enum(FireOutcome, "fire_outcome"), default=None
    )
    next_run_at: Mapped[datetime | None] = mapped_column(
        default=None, comment="next due time; NULL while disabled"
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    name: Mapped[str] = mapped_column(sa.String(100), default="Default", server_default="Default")
    is_default: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    paused_note: Mapped[str | None] = mapped_column(sa.Text, default=None)
    paused_by: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    paused_at: Mapped[datetime | None] = mapped_column(default=None)
    starts_at: Mapped[datetime | None] = mapped_column(default=None, comment="no fire before")
    ends_at: Mapped[datetime | None] = mapped_column(default=None, comment="no fire after")
    remaining_runs: Mapped[int | None] = mapped_column(
        default=None, comment="runs left to start; NULL: unlimited"
    )
    jitter_seconds: Mapped[int] = mapped_column(default=0, server_default="0")
    overlap_policy: Mapped[OverlapPolicy] = mapped_column(
        _enum(OverlapPolicy, "overlap_policy"),
        default=OverlapPolicy.SKIP,
        server_default=OverlapPolicy.SKIP.value,
    )


class ScheduleFire(OrgOwned, Base):
    """One due time of a schedule and its outcome; unique per (schedule, due time, backfill).

    Inserting this row is how a scheduler claims a fire: when several replicas race for
    the same due time, the unique constraint lets exactly one of them win. A backfill of a
    due time is a row of its own (`backfill`), next to the schedule's own fire of it.
    """

    __tablename__ = "collection_schedule_fires"
    __table_args__ = (
        sa.UniqueConstraint("schedule_id", "scheduled_for", "backfill"),
        sa.Index("ix_collection_schedule_fires_org_fired", "org_id", "fired_at", "id"),
        sa.Index("ix_collection_schedule_fires_schedule_fired", "schedule_id", "fired_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    schedule_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("collection_schedules.id", ondelete="CASCADE")
    )
    scheduled_for: Mapped[datetime] = mapped_column(comment="the due time")
    fired_at: Mapped[datetime] = mapped_column(default=utcnow)
    outcome: Mapped[FireOutcome | None] = mapped_column(
        _enum(FireOutcome, "fire_outcome"),
        comment="set in the same transaction that claims the fire; never NULL once committed",
    )
    run_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("collection_runs.id", ondelete="SET NULL"), default=None
    )
    detail: Mapped[str | None] = mapped_column(sa.Text, default=None)
    instance_id: Mapped[str] = mapped_column(sa.String(200))
    manual: Mapped[bool] = mapped_column(default=False, comment="from POST /schedule/trigger")
    backfill: Mapped[bool] = mapped_column(default=False, server_default=sa.false())


class ProviderCallCount(Base):
    """Calls made to a provider's daily-limited API on one provider day, by every instance.

    `SharedDailyCallBudget` counts into it with one atomic upsert per call; one row per
    provider and day, kept as a history of the service's usage.
    """

    __tablename__ = "provider_call_counts"

    provider: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    day: Mapped[date] = mapped_column(primary_key=True, comment="in the provider's time zone")
    calls: Mapped[int]
    updated_at: Mapped[datetime]


class WebSession(Base):
    """A browser's sign-in to the web UI: the cookie holds a random token, only its hash
    is kept here, so a copy of the table signs nobody in."""

    __tablename__ = "web_sessions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True, comment="SHA-256, hex")
    user_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(
        default=utcnow, comment="updated at most once a minute"
    )
    expires_at: Mapped[datetime] = mapped_column(comment="ends here however active")
    revoked_at: Mapped[datetime | None] = mapped_column(default=None, comment="signed out")


class SignInLink(Base):
    """A one-time sign-in link (`collection-api sign-in-link`, or printed by `serve`):
    only the hash of its code is kept; it works once, until it expires."""

    __tablename__ = "web_sign_in_links"

    code_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True, comment="SHA-256")
    email: Mapped[str] = mapped_column(sa.String(320), comment="whom it signs in")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column(default=None)
