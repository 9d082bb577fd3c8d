"""Rate limits, timeouts and retries around every provider call, with clear final errors.

A provider still throttling (HTTP 429) after every retry has not failed: its short-term
rate limit outlasted the back-off, so the call ends in `QuotaExhaustedError` and the run
waits THROTTLE_WAIT, shown as such, then tries again; each time in a row that the throttle
outlasts the retries again, the wait doubles (up to MAX_THROTTLE_WAIT), until a call
succeeds.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

import httpx

from app.core.clock import Clock, utcnow
from app.core.config import Settings
from app.providers.base import (
    AmazonProvider,
    EbayProvider,
    Listing,
    Product,
    ProviderError,
    QuotaExhaustedError,
)

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
Sleep = Callable[[float], Awaitable[None]]
MonotonicClock = Callable[[], float]

THROTTLE_WAIT = timedelta(minutes=5)
"""How long a run waits when a provider still answers 429 after every retry."""
MAX_THROTTLE_WAIT = timedelta(hours=1)


class RateLimiter:
    """Token bucket: at most `burst` calls at once, then `rate` calls per second.

    Each `acquire` reserves a token immediately (the bucket may go into debt) and sleeps
    until that token is due, so concurrent callers are served in arrival order and nobody
    polls. The reservation has no `await` in it, which makes it atomic on the event loop.
    `rate=None` means unlimited.
    """

    def __init__(
        self,
        rate: float | None,
        burst: float | None = None,
        *,
        clock: MonotonicClock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be positive or None, got {rate}")
        if burst is not None and burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate or 1.0)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._updated = clock()

    async def acquire(self) -> None:
        """Wait until one more call is allowed."""
        if self.rate is None:
            return
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        self._tokens -= 1
        if self._tokens >= 0:
            return
        try:
            await self._sleep(-self._tokens / self.rate)
        except asyncio.CancelledError:
            self._tokens += 1  # give the unused token back
            raise


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to wait between attempts of a failing provider call."""

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """The policy configured by the PROVIDER_* settings."""
        return cls(
            max_attempts=settings.provider_max_attempts,
            base_delay=settings.provider_backoff_base_seconds,
            max_delay=settings.provider_backoff_max_seconds,
        )

    def delay(self, attempt: int, error: ProviderError | None = None) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based) before the next one.

        Exponential backoff with full jitter, capped at `max_delay`; but never less than
        the provider's own `retry_after` hint (retrying sooner than asked only fails again),
        up to MAX_RETRY_AFTER (clients turn longer waits into QuotaExhaustedError, which the
        run shows as `resumes_at`).
        """
        ceiling = min(self.max_delay, self.base_delay * 2 ** min(attempt - 1, 62))
        delay = self.rng.uniform(0, ceiling)
        if error is not None and error.retry_after is not None:
            delay = max(delay, min(error.retry_after, MAX_RETRY_AFTER))
        return delay


MAX_RETRY_AFTER = 300.0
"""The longest `Retry-After` a retry waits for, in seconds."""


class ProviderFailedError(Exception):
    """A provider call failed for good; the message is fit to show to users.

    The last `ProviderError` is the `__cause__`.
    """

    def __init__(self, message: str, *, provider: str, operation: str, attempts: int) -> None:
        super().__init__(message)
        self.provider = provider
        self.operation = operation
        self.attempts = attempts


def _reason(error: ProviderError) -> str:
    message = str(error) or type(error).__name__
    if error.status_code is not None and str(error.status_code) not in message:
        message = f"{message} (HTTP {error.status_code})"
    return message


class _Resilient:
    """The rate limit + timeout + retry loop shared by the wrappers of both marketplaces."""

    def __init__(
        self,
        name: str,
        *,
        limiter: RateLimiter,
        policy: RetryPolicy,
        timeout: float,
        sleep: Sleep,
        now: Clock,
    ) -> None:
        self.name = name
        self.limiter = limiter
        self.policy = policy
        self.timeout = timeout
        self._sleep = sleep
        self._now = now
        self.calls = 0
        self.retries = 0
        self.failures = 0
        self._throttled_in_a_row = 0
        self._throttled_until: datetime | None = None

    def _as_provider_error(self, exc: Exception) -> ProviderError:
        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, TimeoutError | httpx.TimeoutException):
            message = f"no answer within {self.timeout:g}s"
        else:
            message = f"network error ({type(exc).__name__}: {exc})"
        error = ProviderError(message, provider=self.name, retryable=True)
        error.__cause__ = exc
        return error

    async def _call(self, operation: str, attempt_once: Callable[[], Awaitable[_T]]) -> _T:
        self.calls += 1
        attempt = 0
        while True:
            attempt += 1
            await self.limiter.acquire()
            try:
                async with asyncio.timeout(self.timeout):
                    result = await attempt_once()
                self._throttled_in_a_row = 0
                return result
            except QuotaExhaustedError:
                raise  # not a failure: the run waits for the quota, retrying sooner is useless
            except (ProviderError, TimeoutError, httpx.TransportError) as exc:
                error = self._as_provider_error(exc)
            spent = attempt >= self.policy.max_attempts
            if spent and error.retryable and error.status_code == 429:
                raise self._still_throttled(operation, attempt, error) from error
            if not error.retryable or attempt >= self.policy.max_attempts:
                self.failures += 1
                if attempt == 1:
                    message = f"{operation} failed: {_reason(error)}"
                else:
                    message = f"{operation} failed after {attempt} attempts: {_reason(error)}"
                raise ProviderFailedError(
                    message, provider=self.name, operation=operation, attempts=attempt
                ) from error
            delay = self.policy.delay(attempt, error)
            self.retries += 1
            logger.warning(
                "%s (%s): attempt %d of %d failed (%s); retrying in %.2fs",
                operation,
                self.name,
                attempt,
                self.policy.max_attempts,
                _reason(error),
                delay,
                extra={"provider": self.name, "attempt": attempt, "delay": round(delay, 3)},
            )
            await self._sleep(delay)

    def _still_throttled(
        self, operation: str, attempts: int, error: ProviderError
    ) -> QuotaExhaustedError:
        now = self._now()
        resume_at = self._throttled_until
        if resume_at is None or resume_at <= now:  # else a call in flight just found it
            self._throttled_in_a_row += 1
            wait = THROTTLE_WAIT * 2 ** min(self._throttled_in_a_row - 1, 8)
            resume_at = self._throttled_until = now + min(MAX_THROTTLE_WAIT, wait)
        return QuotaExhaustedError(
            f"{operation}: still throttled after {attempts} attempts ({_reason(error)}); "
            f"trying again at {resume_at:%H:%M} UTC",
            provider=self.name,
            resume_at=resume_at,
            status_code=429,
            limit=f"a short-term rate limit: {_reason(error)}",
        )


class ResilientAmazonProvider(_Resilient):
    """An `AmazonProvider` whose calls are rate limited, time-bounded and retried."""

    def __init__(
        self,
        inner: AmazonProvider,
        *,
        limiter: RateLimiter,
        policy: RetryPolicy,
        timeout: float,
        sleep: Sleep = asyncio.sleep,
        now: Clock = utcnow,
    ) -> None:
        super().__init__(
            inner.name, limiter=limiter, policy=policy, timeout=timeout, sleep=sleep, now=now
        )
        self.inner = inner

    async def best_sellers(
        self, category_id: str, limit: int, *, as_of: datetime | None = None
    ) -> list[Product]:
        """Up to `limit` best sellers of `category_id` (as of `as_of`: see AmazonProvider).

        Raises `ProviderFailedError`, or `QuotaExhaustedError` (unchanged) when out of quota.
        """
        return await self._call(
            f"Amazon best sellers of category {category_id}",
            lambda: self.inner.best_sellers(category_id, limit, as_of=as_of),
        )


class ResilientEbayProvider(_Resilient):
    """An `EbayProvider` whose calls are rate limited, time-bounded and retried."""

    def __init__(
        self,
        inner: EbayProvider,
        *,
        limiter: RateLimiter,
        policy: RetryPolicy,
        timeout: float,
        sleep: Sleep = asyncio.sleep,
        now: Clock = utcnow,
    ) -> None:
        super().__init__(
            inner.name, limiter=limiter, policy=policy, timeout=timeout, sleep=sleep, now=now
        )
        self.inner = inner

    async def search(
        self, product: Product, limit: int, *, as_of: datetime | None = None
    ) -> list[Listing]:
        """Up to `limit` listings of `product` (as of `as_of`: see EbayProvider).

        Raises `ProviderFailedError`, or `QuotaExhaustedError` (unchanged) when out of quota.
        """
        return await self._call(
            f"eBay search for ASIN {product.asin}",
            lambda: self.inner.search(product, limit, as_of=as_of),
        )
