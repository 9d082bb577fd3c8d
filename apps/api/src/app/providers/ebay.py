"""eBay Buy Browse API client: who lists a product, with an OAuth token and a daily call budget.

One instance per process: the application access token (OAuth client credentials) is
cached until shortly before it expires and shared by every run, with one refresh at a time.
Every Browse API call is first counted against the daily budget (`EBAY_DAILY_CALL_LIMIT`,
shared by all instances through the database, see `app.providers.budget`); when it is
spent the client raises `QuotaExhaustedError` with the start of the next day, so runs wait
instead of failing.

eBay answers HTTP 429 (errorId 2001) both to a burst over a short-term rate limit and once
the application's daily call limit is used up, so a 429 alone says little. The client
weighs the evidence (`_throttled`): a `Retry-After` says how long; else eBay's Analytics
API (`getRateLimits`, asked at most every QUOTA_EVIDENCE_TTL) says whether Browse calls
are left today; with calls left, or no answer from it, the 429 is a short throttle that the
retry policy backs off from (and, if it persists through the retries, a short wait, see
`app.providers.resilience`). Only eBay's own "0 calls left" parks a run until eBay's reset.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import httpx

from app.core.clock import Clock, utcnow
from app.core.config import Settings
from app.core.database import Database
from app.providers.base import Listing, Product, ProviderError, QuotaExhaustedError
from app.providers.budget import (
    PACIFIC,
    CallBudget,
    DailyCallBudget,
    next_midnight,
)
from app.providers.ebay_parsing import (
    PROVIDER,
    as_list,
    as_mapping,
    errors_detail,
    json_object,
    malformed,
    parse_listing,
    parse_retry_after,
    parse_timestamp,
    seconds_text,
    token_error,
)
from app.providers.fair_share import BudgetTerms, FairDailyCallBudget
from app.providers.matching import search_keywords, title_matches

logger = logging.getLogger(__name__)


OAUTH_SCOPE: Final = "https://api.ebay.com/oauth/api_scope"
TOKEN_PATH: Final = "/identity/v1/oauth2/token"  # noqa: S105  (a URL path, not a secret)
SEARCH_PATH: Final = "/buy/browse/v1/item_summary/search"
RATE_LIMIT_PATH: Final = "/developer/analytics/v1_beta/rate_limit/"
DEFAULT_DAILY_CALL_LIMIT: Final = 5000
MAX_PAGE_SIZE: Final = 200
"""The most items the Browse API returns per page (`limit`)."""
TOKEN_REFRESH_MARGIN: Final = timedelta(minutes=5)
"""A cached token is replaced this long before eBay says it expires."""
LONG_RETRY_AFTER: Final = timedelta(minutes=1)
"""A 429 asking to wait longer than this is a spent quota: the run waits, not retries."""
BUDGET_SETTING: Final = "EBAY_DAILY_CALL_LIMIT"
QUOTA_EVIDENCE_TTL: Final = timedelta(seconds=30)
"""How long one Analytics answer explains the 429s that follow (one call, not one per 429)."""


def daily_budget(
    limit: int,
    *,
    database: Database | None = None,
    clock: Clock = utcnow,
    terms: BudgetTerms | None = None,
) -> CallBudget:
    """The daily Browse API budget: shared by every instance through `database` when given
    (and by organizations in turns, as `terms` say), else counted in this process. eBay's
    call limits roll over at midnight Pacific time."""
    if database is not None:
        return FairDailyCallBudget(
            database, terms or budget_terms(limit, setting=BUDGET_SETTING), clock=clock
        )
    setting = terms.setting if terms is not None else BUDGET_SETTING
    return DailyCallBudget(limit, provider=PROVIDER, setting=setting, label="eBay", clock=clock)


def budget_terms(
    limit: int, *, setting: str, turn: int = 0, default_cap: int | None = None
) -> BudgetTerms:
    """eBay's daily call budget of `limit` calls (set by `setting`), shared in turns of
    `turn` calls (0: first come, first served) under a cap of `default_cap` a day for each
    organization."""
    return BudgetTerms(
        provider=PROVIDER,
        label="eBay",
        setting=setting,
        limit=limit,
        zone=PACIFIC,
        turn=turn,
        default_cap=default_cap,
    )


def settings_budget_terms(settings: Settings) -> BudgetTerms | None:
    """The eBay budget the settings define: EBAY_DAILY_CALL_LIMIT for the real client,
    SAMPLE_EBAY_DAILY_CALL_LIMIT for the sample standing in for it (None: unset, unlimited)."""
    if settings.ebay_provider == "ebay":
        limit, setting = settings.ebay_daily_call_limit, BUDGET_SETTING
    elif settings.sample_ebay_daily_call_limit is not None:
        limit, setting = settings.sample_ebay_daily_call_limit, "SAMPLE_EBAY_DAILY_CALL_LIMIT"
    else:
        return None
    return budget_terms(
        limit,
        setting=setting,
        turn=settings.ebay_fair_turn_calls,
        default_cap=settings.ebay_org_daily_call_cap,
    )


@dataclass(frozen=True, slots=True)
class AccessToken:
    """An application access token and when to stop using it."""

    value: str
    expires_at: datetime
    refresh_at: datetime


@dataclass(frozen=True, slots=True)
class BrowseQuota:
    """The application's Browse API call limit as eBay's Analytics API reports it."""

    limit: int
    remaining: int
    resets_at: datetime | None


class EbayBrowseProvider:
    """eBay listings of a product from `item_summary/search`, by UPC or by title keywords.

    A product with a valid UPC (else EAN) is searched with `gtin=`; listings eBay returns for
    it are kept. Otherwise, or when eBay has no listing with that GTIN or refuses it (and
    `keyword_fallback` is on), the title's identifying words are searched with `q=`, and
    only listings whose title matches the product (see `app.providers.matching`) are kept.
    Pages are followed through `next` until `limit` items were examined.
    """

    name = PROVIDER

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        http: httpx.AsyncClient,
        base_url: str = "https://api.ebay.com",
        marketplace_id: str = "EBAY_US",
        budget: CallBudget | None = None,
        title_match_threshold: float = 0.6,
        keyword_fallback: bool = True,
        page_size: int = MAX_PAGE_SIZE,
        clock: Clock = utcnow,
        request_timeout: float = 30.0,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1-{MAX_PAGE_SIZE}, got {page_size}")
        self._client_id = client_id
        self._client_secret = client_secret
        self._http = http
        self.base_url = base_url.rstrip("/")
        self.marketplace_id = marketplace_id
        self.budget = (
            budget if budget is not None else daily_budget(DEFAULT_DAILY_CALL_LIMIT, clock=clock)
        )
        self.title_match_threshold = title_match_threshold
        self.keyword_fallback = keyword_fallback
        self.page_size = page_size
        self._clock = clock
        self._timeout = httpx.Timeout(request_timeout)  # per request, as for Keepa
        self._token: AccessToken | None = None
        self._token_lock = asyncio.Lock()
        self._quota_seen: tuple[datetime, BrowseQuota | None] | None = None
        self._quota_lock = asyncio.Lock()

    @classmethod
    def from_settings(
        cls, settings: Settings, http: httpx.AsyncClient, *, database: Database | None = None
    ) -> EbayBrowseProvider:
        """The client configured by the EBAY_* settings; its daily budget is shared by every
        instance through `database` when given."""
        if not settings.ebay_client_id or settings.ebay_client_secret is None:
            raise ValueError("EBAY_PROVIDER=ebay needs EBAY_CLIENT_ID and EBAY_CLIENT_SECRET")
        return cls(
            client_id=settings.ebay_client_id.strip(),
            client_secret=settings.ebay_client_secret.get_secret_value().strip(),
            http=http,
            base_url=settings.ebay_api_url,
            marketplace_id=settings.ebay_marketplace_id,
            budget=daily_budget(
                settings.ebay_daily_call_limit,
                database=database,
                terms=settings_budget_terms(settings),
            ),
            title_match_threshold=settings.ebay_title_match_threshold,
            keyword_fallback=settings.ebay_keyword_fallback,
            request_timeout=settings.provider_timeout_seconds,
        )

    async def search(
        self, product: Product, limit: int, *, as_of: datetime | None = None
    ) -> list[Listing]:
        """Up to `limit` listings of `product`, one per item, in eBay's order.

        eBay lists what is for sale now: `as_of` is ignored."""
        if limit <= 0:
            return []
        gtin = product.gtin
        if gtin is not None:
            try:
                listings, examined = await self._search({"gtin": gtin}, product, limit)
            except ProviderError as exc:
                if exc.status_code != httpx.codes.BAD_REQUEST or not self.keyword_fallback:
                    raise
                # eBay refused this code: one product's bad catalog data must not fail the run
                logger.warning("eBay refused GTIN %s (%s); searching by title instead", gtin, exc)
            else:
                if examined or not self.keyword_fallback:
                    return listings
                logger.debug("eBay has no listing with GTIN %s; searching by title instead", gtin)
        listings, _ = await self._search(
            {"q": search_keywords(product.title)}, product, limit, match_titles=True
        )
        return listings

    async def _search(
        self,
        query: Mapping[str, str],
        product: Product,
        limit: int,
        *,
        match_titles: bool = False,
    ) -> tuple[list[Listing], int]:
        """The listings of one search, following `next` until `limit` items were examined,
        and how many items eBay returned. With `match_titles`, only listings whose title
        matches the product's are kept."""
        url: str | None = f"{self.base_url}{SEARCH_PATH}"
        params: Mapping[str, str | int] | None = {  # `next` links carry their own
            **query,
            "limit": min(limit, self.page_size),
        }
        found: dict[str, Listing] = {}
        examined = 0
        while url is not None and examined < limit:
            page = await self._browse(url, params)
            items = page.get("itemSummaries") or []  # absent when nothing matched
            if not isinstance(items, list):
                raise malformed("itemSummaries is not a list")
            for raw in items[: limit - examined]:
                examined += 1
                listing = parse_listing(raw, product.currency)
                if listing is None or listing.item_id in found:
                    continue
                if match_titles and not title_matches(
                    product.title, listing.title, threshold=self.title_match_threshold
                ):
                    continue
                found[listing.item_id] = listing
            url, params = self._next_page(page.get("next")), None
            if not items:
                break
        return list(found.values()), examined

    async def access_token(self) -> AccessToken:
        """A valid application access token: the cached one, or a new one (one at a time)."""
        token = self._token
        if token is not None and self._clock() < token.refresh_at:
            return token
        async with self._token_lock:
            token = self._token  # someone may have refreshed it while we waited
            if token is None or self._clock() >= token.refresh_at:
                token = self._token = await self._request_token()
            return token

    async def browse_quota(self) -> BrowseQuota | None:
        """The application's Browse API limit and calls left today, from the Analytics API.

        None when eBay reports no Browse quota for the application.
        """
        token = await self.access_token()
        response = await self._http.get(
            f"{self.base_url}{RATE_LIMIT_PATH}",
            params={"api_context": "buy", "api_name": "browse"},
            headers={"Authorization": f"Bearer {token.value}"},
            timeout=self._timeout,
        )
        if response.status_code != httpx.codes.OK:
            raise ProviderError(
                f"eBay Analytics API answered HTTP {response.status_code}{errors_detail(response)}",
                provider=PROVIDER,
                retryable=False,
                status_code=response.status_code,
            )
        body = json_object(response, "the rate limit answer")
        for api in as_list(body.get("rateLimits"), "rateLimits"):
            for resource in as_list(as_mapping(api, "a rate limit").get("resources"), "resources"):
                resource = as_mapping(resource, "a rate limit resource")
                rates = as_list(resource.get("rates"), "rates")
                if resource.get("name") != "buy.browse" or not rates:
                    continue
                rate = as_mapping(rates[0], "a rate")
                limit, remaining = rate.get("limit"), rate.get("remaining")
                if not isinstance(limit, int) or not isinstance(remaining, int):
                    raise malformed("a rate without limit and remaining counts")
                reset = rate.get("reset")
                return BrowseQuota(
                    limit=limit,
                    remaining=remaining,
                    resets_at=parse_timestamp(reset) if isinstance(reset, str) else None,
                )
        return None

    # --- requests -----------------------------------------------------------------------

    async def _request_token(self) -> AccessToken:
        """POST the client credentials grant; eBay allows about 1,000 of these a day."""
        response = await self._http.post(
            f"{self.base_url}{TOKEN_PATH}",
            data={"grant_type": "client_credentials", "scope": OAUTH_SCOPE},
            auth=(self._client_id, self._client_secret),
            timeout=self._timeout,
        )
        if response.status_code != httpx.codes.OK:
            raise token_error(response)
        body = json_object(response, "the token answer")
        value, expires_in = body.get("access_token"), body.get("expires_in")
        if not isinstance(value, str) or not value:
            raise malformed("the token answer has no access_token")
        if not isinstance(expires_in, int) or isinstance(expires_in, bool) or expires_in <= 0:
            raise malformed("the token answer has no positive expires_in")
        now = self._clock()
        lifetime = timedelta(seconds=expires_in)
        margin = min(TOKEN_REFRESH_MARGIN, lifetime / 10)
        logger.info("eBay application token obtained (valid for %ds)", expires_in)
        return AccessToken(value, expires_at=now + lifetime, refresh_at=now + lifetime - margin)

    async def _browse(self, url: str, params: Mapping[str, str | int] | None) -> dict[str, Any]:
        """One Browse API GET within the daily budget; a 401 renews the token once."""
        for attempt in (1, 2):
            token = await self.access_token()
            await self.budget.take()
            response = await self._http.get(
                url,
                params=params,
                headers={
                    "Authorization": f"Bearer {token.value}",
                    "X-EBAY-C-MARKETPLACE-ID": self.marketplace_id,
                },
                timeout=self._timeout,
            )
            if response.status_code == httpx.codes.UNAUTHORIZED and attempt == 1:
                logger.info("eBay refused the access token (HTTP 401); getting a new one")
                if self._token is token:
                    self._token = None
                continue
            if response.status_code == httpx.codes.TOO_MANY_REQUESTS:
                raise await self._throttled(response)
            return self._search_answer(response)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _throttled(self, response: httpx.Response) -> ProviderError:
        """What a 429 from the Browse API means, by the evidence: a wait as long as eBay's
        `Retry-After`; until eBay's reset when its Analytics API reports no calls left
        today; otherwise a short throttle to back off from (a retryable error)."""
        detail = errors_detail(response)
        now = self._clock()
        retry_after = parse_retry_after(response, now)
        if retry_after is not None and retry_after > LONG_RETRY_AFTER:
            resume_at = now + retry_after
            return QuotaExhaustedError(
                f"eBay asks to wait until {resume_at:%Y-%m-%d %H:%M} UTC (HTTP 429{detail})",
                provider=PROVIDER,
                resume_at=resume_at,
                status_code=429,
                limit=f"eBay's rate limit (HTTP 429 with Retry-After: {seconds_text(retry_after)})",
            )
        if retry_after is not None:
            return ProviderError(
                f"eBay is throttling searches (HTTP 429{detail}; Retry-After: "
                f"{seconds_text(retry_after)})",
                provider=PROVIDER,
                retryable=True,
                status_code=429,
                retry_after=retry_after.total_seconds(),
            )
        quota = await self._quota_evidence()
        if quota is not None and quota.remaining <= 0:
            # The application's calls for today are used up (by this service or another
            # user of the keyset): wait for eBay's reset rather than retry into it.
            reset = quota.resets_at
            until = reset if reset is not None and reset > now else next_midnight(now, PACIFIC)
            return QuotaExhaustedError(
                f"eBay's daily call limit for this application is reached (HTTP 429{detail}; "
                f"eBay reports 0 of {quota.limit} Browse calls left); continuing at "
                f"{until:%Y-%m-%d %H:%M} UTC",
                provider=PROVIDER,
                resume_at=until,
                status_code=429,
                limit=f"eBay's daily call limit (eBay reports 0 of {quota.limit} calls left)",
            )
        if quota is not None:
            evidence = f"eBay reports {quota.remaining} of {quota.limit} Browse calls left today"
        else:
            used = await self.budget.used()
            evidence = (
                f"eBay's Analytics API did not say how many calls are left; this service "
                f"made {used} of at most {self.budget.limit} today"
            )
        return ProviderError(
            f"eBay is throttling searches (HTTP 429{detail}; {evidence})",
            provider=PROVIDER,
            retryable=True,
            status_code=429,
        )

    async def _quota_evidence(self) -> BrowseQuota | None:
        """eBay's word on the Browse calls left today, at most QUOTA_EVIDENCE_TTL old; None
        when the Analytics API does not answer (or has no Browse quota for this keyset)."""
        async with self._quota_lock:  # concurrent 429s share one Analytics call
            seen = self._quota_seen
            if seen is not None and self._clock() - seen[0] < QUOTA_EVIDENCE_TTL:
                return seen[1]
            try:
                quota = await self.browse_quota()
            except (ProviderError, httpx.HTTPError) as exc:
                logger.info("eBay's Analytics API did not answer (%s)", exc)
                quota = None
            self._quota_seen = (self._clock(), quota)
            return quota

    def _search_answer(self, response: httpx.Response) -> dict[str, Any]:
        status = response.status_code
        if status == httpx.codes.OK:
            return json_object(response, "the search answer")
        detail = errors_detail(response)
        if status >= 500:
            retry_after = parse_retry_after(response, self._clock())
            if retry_after is not None and retry_after > LONG_RETRY_AFTER:
                resume_at = self._clock() + retry_after
                raise QuotaExhaustedError(
                    f"eBay asks to wait until {resume_at:%Y-%m-%d %H:%M} UTC (HTTP {status}"
                    f"{detail})",
                    provider=PROVIDER,
                    resume_at=resume_at,
                    status_code=status,
                    limit=f"eBay (HTTP {status} with Retry-After: {seconds_text(retry_after)})",
                )
            raise ProviderError(
                f"eBay search answered HTTP {status}{detail}",
                provider=PROVIDER,
                retryable=True,
                status_code=status,
                retry_after=retry_after.total_seconds() if retry_after is not None else None,
            )
        if status == httpx.codes.UNAUTHORIZED:
            message = (
                f"eBay refused a freshly issued access token (HTTP 401{detail}); check that "
                "the EBAY_CLIENT_ID keyset may call the Buy Browse API"
            )
        elif status == httpx.codes.FORBIDDEN:
            message = f"eBay denied access to the Browse API (HTTP 403{detail})"
        else:
            message = f"eBay search rejected the request (HTTP {status}{detail})"
        raise ProviderError(message, provider=PROVIDER, retryable=False, status_code=status)

    def _next_page(self, next_url: object) -> str | None:
        """The `next` link, if it points at the configured API (never send the token
        elsewhere)."""
        if next_url is None:
            return None
        if not isinstance(next_url, str):
            raise malformed("next is not a URL")
        base, target = httpx.URL(self.base_url), httpx.URL(next_url)
        if (target.scheme, target.host, target.port) != (base.scheme, base.host, base.port):
            raise malformed(f"next points away from {self.base_url}")
        return next_url
