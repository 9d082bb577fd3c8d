"""Marketplace providers: interfaces, offline sample data, real clients, and resilience."""

from __future__ import annotations

import httpx

from app.core.config import Settings
from app.core.database import Database
from app.providers.base import AmazonProvider, EbayProvider
from app.providers.budget import BudgetedEbayProvider
from app.providers.ebay import EbayBrowseProvider, daily_budget, settings_budget_terms
from app.providers.keepa import KeepaAmazonProvider
from app.providers.resilience import (
    RateLimiter,
    ResilientAmazonProvider,
    ResilientEbayProvider,
    RetryPolicy,
)
from app.providers.sample import SampleAmazonProvider, SampleEbayProvider

__all__ = ["build_providers"]


def build_providers(
    settings: Settings,
    *,
    http: httpx.AsyncClient | None = None,
    database: Database | None = None,
) -> tuple[AmazonProvider, EbayProvider]:
    """The configured Amazon and eBay providers, each rate limited, time-bounded and retried.

    `http` is the shared client the real marketplace clients send their requests with (the
    app's, closed with it); it is required when AMAZON_PROVIDER=keepa or EBAY_PROVIDER=ebay.
    With `database`, eBay's daily call budget (and the sample's, when
    SAMPLE_EBAY_DAILY_CALL_LIMIT gives it one) is counted there, shared by every instance
    and by organizations in turns; without, in this process. Build them once per process:
    the real clients keep token and quota state.
    """
    amazon: AmazonProvider
    if settings.amazon_provider == "keepa":
        amazon = KeepaAmazonProvider.from_settings(settings, _shared(http, "AMAZON_PROVIDER=keepa"))
    else:
        amazon = SampleAmazonProvider(
            settings.sample_provider_latency_ms,
            market_day_seconds=settings.sample_market_day_seconds,
        )
    ebay: EbayProvider
    if settings.ebay_provider == "ebay":
        ebay = EbayBrowseProvider.from_settings(
            settings, _shared(http, "EBAY_PROVIDER=ebay"), database=database
        )
    else:
        ebay = SampleEbayProvider(
            settings.sample_provider_latency_ms,
            market_day_seconds=settings.sample_market_day_seconds,
        )
        terms = settings_budget_terms(settings)
        if terms is not None:  # SAMPLE_EBAY_DAILY_CALL_LIMIT: as if it were eBay's budget
            ebay = BudgetedEbayProvider(
                ebay, daily_budget(terms.limit, database=database, terms=terms)
            )
    policy = RetryPolicy.from_settings(settings)
    timeout = settings.provider_timeout_seconds
    return (
        ResilientAmazonProvider(
            amazon,
            limiter=RateLimiter(settings.amazon_requests_per_second),
            policy=policy,
            timeout=timeout,
        ),
        ResilientEbayProvider(
            ebay,
            limiter=RateLimiter(settings.ebay_requests_per_second),
            policy=policy,
            timeout=timeout,
        ),
    )


def _shared(http: httpx.AsyncClient | None, setting: str) -> httpx.AsyncClient:
    if http is None:
        raise ValueError(f"{setting} needs the shared httpx.AsyncClient (build_providers(http=))")
    return http
