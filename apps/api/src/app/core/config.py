"""Service settings, read once from the environment (and a `.env` file)."""

from __future__ import annotations

import os
import secrets
import socket
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path("data")
_WEAK_SECRETS = {"secret", "changeme", "change-me", "changethis", "jwt-secret", "password"}
MIN_SECRET_LENGTH = 32


class Settings(BaseSettings):
    """Every knob of the service; field names are the environment variables."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    data_dir: Path = Field(
        default=DEFAULT_DATA_DIR,
        description="Directory for the embedded database and the generated JWT secret.",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy async URL; empty means SQLite under DATA_DIR.",
    )
    database_pool_size: int = Field(default=10, ge=1, le=200)
    database_echo: bool = False
    database_connect_timeout_seconds: float = Field(
        default=30.0,
        ge=0,
        description="How long `serve` waits at start for the database to accept connections "
        "(retrying with back-off) before it gives up.",
    )

    jwt_secret: str | None = Field(
        default=None,
        description="HS256 secret; when unset one is generated once under DATA_DIR.",
        repr=False,
    )
    jwt_audience: str = "authenticated"
    jwt_issuer: str | None = None
    jwt_jwks_url: str | None = Field(
        default=None, description="JWKS endpoint for RS256/ES256 tokens (e.g. Supabase)."
    )
    jwt_jwks_cache_seconds: int = Field(default=600, ge=0)
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=600)
    jwt_require_verified_email: bool = Field(
        default=True,
        description="Refuse tokens whose email is not marked verified (`email_verified`, or "
        "`user_metadata.email_verified` as Supabase puts it): people join organizations by "
        "email, so an unverified address could claim someone else's invitation.",
    )

    web_session_idle_seconds: int = Field(
        default=8 * 3600,
        ge=60,
        description="A web session unused this long ends (measured to the minute).",
    )
    web_session_max_seconds: int = Field(
        default=7 * 86_400,
        ge=60,
        description="A web session ends this long after sign-in, however active.",
    )

    max_request_body_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        description="Largest request body accepted (bytes); a larger one is answered 413 "
        "before it is read in full.",
    )

    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    amazon_provider: Literal["sample", "keepa"] = "sample"
    ebay_provider: Literal["sample", "ebay"] = "sample"
    sample_provider_latency_ms: int = Field(
        default=5, ge=0, le=60_000, description="Simulated latency of each sample provider call."
    )
    sample_market_day_seconds: int = Field(
        default=86_400,
        ge=1,
        description="Length of a market day of the sample providers, whose market drifts from "
        "one day to the next (sellers come and go, ranks and prices move); shorten it to see "
        "change in demos and tests. A run reads the market of the day it was created.",
    )
    amazon_requests_per_second: float | None = Field(
        default=None, gt=0, description="Rate limit of Amazon provider calls per instance."
    )
    ebay_requests_per_second: float | None = Field(
        default=None, gt=0, description="Rate limit of eBay provider calls per instance."
    )
    provider_max_attempts: int = Field(default=5, ge=1, le=20)
    provider_backoff_base_seconds: float = Field(default=0.5, ge=0)
    provider_backoff_max_seconds: float = Field(default=30.0, ge=0)
    provider_timeout_seconds: float = Field(default=30.0, gt=0)

    # --- real provider clients: Keepa (AMAZON_PROVIDER=keepa), eBay (EBAY_PROVIDER=ebay) ---
    keepa_api_key: SecretStr | None = Field(
        default=None, description="Keepa API access key; required when AMAZON_PROVIDER=keepa."
    )
    keepa_api_url: str = Field(default="https://api.keepa.com", description="Keepa API base URL.")
    keepa_domain: Literal[1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12] = Field(
        default=1,
        description="Keepa Amazon locale: 1 com, 2 co.uk, 3 de, 4 fr, 5 co.jp, 6 ca, 8 it, "
        "9 es, 10 in, 11 com.mx, 12 com.br.",
    )
    keepa_bestsellers_range: Literal[0, 30, 90, 180] = Field(
        default=0,
        description="Rank best sellers by the current sales rank (0) or its 30/90/180-day average.",
    )
    ebay_client_id: str | None = Field(
        default=None, description="eBay application (client) ID; required when EBAY_PROVIDER=ebay."
    )
    ebay_client_secret: SecretStr | None = Field(
        default=None, description="eBay client secret (cert ID); required when EBAY_PROVIDER=ebay."
    )
    ebay_api_url: str = Field(default="https://api.ebay.com", description="eBay API base URL.")
    ebay_marketplace_id: str = Field(
        default="EBAY_US", min_length=1, description="X-EBAY-C-MARKETPLACE-ID of every search."
    )
    ebay_daily_call_limit: int = Field(
        default=5000,
        ge=1,
        description="Browse API calls per day (midnight to midnight Pacific time) at most, by "
        "all instances on this database together.",
    )
    ebay_fair_turn_calls: int = Field(
        default=25,
        ge=0,
        le=10_000,
        description="When the eBay calls left today are fewer than the running runs need, "
        "organizations take them in turns: none gets this many calls ahead of another whose "
        "run is waiting for them. 0: first come, first served.",
    )
    ebay_org_daily_call_cap: int | None = Field(
        default=None,
        ge=1,
        description="At most this many eBay calls a day for each organization (unset: no "
        "cap but the fair share); an organization's admins may set a lower cap of their own.",
    )
    sample_ebay_daily_call_limit: int | None = Field(
        default=None,
        ge=1,
        description="A daily call budget for the sample eBay provider, counted and shared "
        "as eBay's (unset: unlimited); to try the fair share and the estimates offline.",
    )
    ebay_keyword_fallback: bool = Field(
        default=True,
        description="Search a product by its title when eBay has no listing with its UPC "
        "(one more call per such product).",
    )
    ebay_title_match_threshold: float = Field(
        default=0.6,
        ge=0,
        le=1,
        description="Share of a product's identifying title words a keyword-found listing must "
        "contain to count as the same item (see app.providers.matching).",
    )
    run_quota_check_seconds: float = Field(
        default=2.0,
        gt=0,
        description="While a run waits for provider quota: how often it checks for pause/cancel.",
    )

    run_products_per_category: int = Field(default=50, ge=1, le=100)
    run_listings_per_product: int = Field(default=20, ge=1, le=200)
    run_max_concurrent: int = Field(default=4, ge=1, le=64, description="Runs per instance.")
    run_provider_concurrency: int = Field(
        default=8, ge=1, le=64, description="Provider calls in flight per run."
    )
    run_lease_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A run whose executor has not renewed its lease for this long (it died) "
        "is taken over by another instance.",
    )
    run_sweep_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How often an instance looks for runs nobody executes (the fallback: "
        "on PostgreSQL an instance that leaves a run to others tells them at once).",
    )
    results_retention_days: int = Field(
        default=90,
        ge=1,
        description="Results of runs finished longer ago, and schedule history older than "
        "this, are deleted.",
    )
    cleanup_interval_seconds: float = Field(default=3600.0, gt=0)
    cleanup_batch_size: int = Field(default=1000, ge=1)

    instance_role: Literal["all", "api", "worker"] = Field(
        default="all",
        description="What this process does. all: the HTTP API, the schedule engine and the "
        "run executor (one process does everything); api: the HTTP API only, runs started "
        "here are executed by the instances that execute runs; worker: the schedule engine "
        "and the run executor with no API (`collection-api worker` sets it).",
    )
    scheduler_enabled: bool = Field(
        default=True,
        description="Run the schedule engine here when this instance's role includes it "
        "(false: this instance executes runs but fires no schedules).",
    )
    shutdown_drain_seconds: float = Field(
        default=20.0,
        ge=0,
        description="On SIGTERM or SIGINT: how long runs executing here may take to reach "
        "their next checkpoint before this instance hands them over anyway (the provider "
        "calls still in flight then are made again by whoever continues). Keep it below "
        "the time your orchestrator waits before it kills the process.",
    )
    schedule_misfire_grace_seconds: int = Field(default=3600, ge=0)
    scheduler_poll_seconds: float = Field(
        default=2.0,
        gt=0,
        le=5,
        description="How soon a change made on another replica is noticed, at most (PostgreSQL "
        "notifies every replica at once; this is the fallback).",
    )
    scheduler_batch_size: int = Field(default=500, ge=1, le=5000)

    smtp_url: str | None = Field(
        default=None,
        description="smtp://[user:pass@]host[:port] or smtps://...; unset: mail is logged.",
        repr=False,
    )
    mail_from: str = "Collection API <collection-api@localhost>"
    instance_id: str = Field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    @field_validator("jwt_secret")
    @classmethod
    def _refuse_weak_secret(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if value.lower() in _WEAK_SECRETS or len(value) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"JWT_SECRET must be a random string of at least {MIN_SECRET_LENGTH} characters "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`), "
                "or unset to have one generated under DATA_DIR"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if value and not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "DATABASE_URL must start with sqlite+aiosqlite:// or postgresql+asyncpg://, "
                f"got {value.split('://', 1)[0]!r}://..."
            )
        return value

    @field_validator("keepa_api_url", "ebay_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError(
                f"must be an http(s) URL such as https://api.example.com, got {value!r}"
            )
        return value.rstrip("/")

    @model_validator(mode="after")
    def _provider_credentials(self) -> Settings:
        missing = []
        if self.amazon_provider == "keepa" and not _secret(self.keepa_api_key):
            missing.append("AMAZON_PROVIDER=keepa needs KEEPA_API_KEY (your Keepa API access key)")
        if self.ebay_provider == "ebay":
            if not self.ebay_client_id:
                missing.append("EBAY_PROVIDER=ebay needs EBAY_CLIENT_ID (your eBay App ID)")
            if not _secret(self.ebay_client_secret):
                missing.append("EBAY_PROVIDER=ebay needs EBAY_CLIENT_SECRET (your eBay Cert ID)")
        if missing:
            raise ValueError("; ".join(missing))
        return self

    @property
    def effective_database_url(self) -> str:
        """The database URL in use: DATABASE_URL, or SQLite under the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'collection.db'}"

    @property
    def executes_runs(self) -> bool:
        """Whether this instance executes runs (its role is not `api`)."""
        return self.instance_role != "api"

    @property
    def runs_scheduler(self) -> bool:
        """Whether this instance runs the schedule engine (its role and SCHEDULER_ENABLED)."""
        return self.executes_runs and self.scheduler_enabled

    @property
    def is_sqlite(self) -> bool:
        """Whether the configured database is SQLite."""
        return self.effective_database_url.startswith("sqlite")

    @cached_property
    def jwt_signing_secret(self) -> str:
        """The HS256 secret: JWT_SECRET, or the one generated once and kept under DATA_DIR."""
        if self.jwt_secret:
            return self.jwt_secret
        return load_or_create_secret(self.data_dir / "jwt_secret")


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value().strip() if value is not None else ""


def load_or_create_secret(path: Path) -> str:
    """Read the secret at `path`, creating it (mode 0600) on first use.

    The new secret is written to a private temporary file and hard-linked into place, so
    two processes starting at once agree on one secret and never read a half-written file.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        candidate = secrets.token_urlsafe(48)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(candidate + "\n")
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race; use its secret
        finally:
            tmp.unlink(missing_ok=True)
    value = path.read_text(encoding="utf-8").strip()
    if len(value) < MIN_SECRET_LENGTH:
        raise RuntimeError(
            f"{path} holds a secret shorter than {MIN_SECRET_LENGTH} characters; "
            "delete it to have a new one generated"
        )
    return value
