"""Marketplace providers: interfaces, offline sample data, real clients, and resilience."""

from __future__ import annotations

import httpx

from app.config import Settings
from app.providers.base import AmazonProvider, EbayProvider
from app.providers.resilience import (
    RateLimiter,
    ResilientAmazonProvider,
    ResilientEbayProvider,
    RetryPolicy,
)
from app.providers.sample import SampleAmazonProvider, SampleEbayProvider

__all__ = ["build_providers"]


def build_providers(
    settings: Settings, *, http: httpx.AsyncClient | None = None
) -> tuple[AmazonProvider, EbayProvider]:
    """The configured Amazon and eBay providers, each rate limited, time-bounded and retried.

    `http` is the shared client the real marketplace clients will send their requests with.
    """
    amazon: AmazonProvider
    if settings.amazon_provider == "sample":
        amazon = SampleAmazonProvider(settings.sample_provider_latency_ms)
    else:
        raise NotImplementedError(
            f"the {settings.amazon_provider!r} Amazon provider is not available yet"
        )
    ebay: EbayProvider
    if settings.ebay_provider == "sample":
        ebay = SampleEbayProvider(settings.sample_provider_latency_ms)
    else:
        raise NotImplementedError(
            f"the {settings.ebay_provider!r} eBay provider is not available yet"
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
