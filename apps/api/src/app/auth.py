"""Bearer-token verification, who is asking (the principal), the acting organization and
permissions; the request dependencies built on them are in `app.api.deps`."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from fastapi import Request

from app import users as user_service
from app.core.config import Settings
from app.core.database import DbActor, acting_as
from app.errors import ForbiddenError, InvalidError, UnauthenticatedError, UnavailableError
from app.instance import instance_of
from app.models import email_address
from app.tables import Role

logger = logging.getLogger(__name__)

HMAC_ALGORITHMS = frozenset({"HS256"})
JWKS_ALGORITHMS = frozenset({"RS256", "ES256"})

ALL_PERMISSIONS = frozenset(
    {
        "collection.view",
        "collection.run",
        "presets.manage",
        "members.manage",
        "admin.automation",
        "org.settings",
    }
)
ROLE_PERMISSIONS: dict[Role, frozenset[str]] = {
    Role.ADMIN: ALL_PERMISSIONS,
    Role.MEMBER: frozenset({"collection.view", "collection.run", "presets.manage"}),
    Role.VIEWER: frozenset({"collection.view"}),
}


class InvalidTokenError(Exception):
    """The bearer token cannot be trusted; the message says why (safe to show)."""


class KeysUnavailableError(Exception):
    """The identity provider's signing keys could not be fetched."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What the service takes from a verified token."""

    user_id: uuid.UUID
    email: str


class JwksCache:
    """Signing keys from a JWKS endpoint, cached, refreshed when an unknown `kid` appears."""

    MIN_REFRESH_INTERVAL = 30.0
    FAILURE_BACKOFF = 5.0
    """After a failed fetch with no keys to fall back on, requests are refused this long
    without asking the endpoint again (a down identity provider is not hammered)."""

    def __init__(
        self,
        url: str,
        *,
        ttl_seconds: float,
        client: httpx.AsyncClient,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._ttl = ttl_seconds
        self._client = client
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._failure: tuple[float, str] | None = None  # when the last fetch failed, why
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None) -> jwt.PyJWK:
        """The key for `kid` (or the only key, when the token names none)."""
        now = self._clock()
        stale = now - self._fetched_at > self._ttl
        unknown = kid is not None and kid not in self._keys
        if stale or (unknown and now - self._fetched_at > self.MIN_REFRESH_INTERVAL):
            await self._refresh()
        if kid is None:
            if len(self._keys) == 1:
                return next(iter(self._keys.values()))
            raise InvalidTokenError("token header has no 'kid' and the JWKS holds several keys")
        try:
            return self._keys[kid]
        except KeyError:
            raise InvalidTokenError(f"no signing key with kid {kid!r}") from None

    async def _refresh(self) -> None:
        async with self._lock:
            if self._clock() - self._fetched_at < 1.0:
                return  # another request just refreshed
            if self._failure is not None and not self._keys:
                failed_at, reason = self._failure
                if self._clock() - failed_at < self.FAILURE_BACKOFF:
                    raise KeysUnavailableError(reason)
            try:
                response = await self._client.get(self._url, timeout=10.0)
                response.raise_for_status()
                key_set = jwt.PyJWKSet.from_dict(response.json())
            except (httpx.HTTPError, ValueError, jwt.PyJWKSetError) as exc:
                if self._keys:
                    logger.warning(
                        "JWKS refresh from %s failed, keeping old keys: %s", self._url, exc
                    )
                    self._fetched_at = self._clock()
                    return
                reason = f"cannot fetch JWKS from {self._url}: {exc}"
                self._failure = (self._clock(), reason)
                raise KeysUnavailableError(reason) from exc
            self._failure = None
            self._keys = {k.key_id: k for k in key_set.keys if k.key_id is not None}
            if not self._keys and key_set.keys:
                self._keys = {"": key_set.keys[0]}
            self._fetched_at = self._clock()


class TokenVerifier:
    """Verifies HS256 tokens with the shared secret and RS256/ES256 tokens against a JWKS.

    A verified token is remembered (the `REMEMBERED` most recent ones) until it expires,
    so a client sending the same token request after request pays for its signature
    once. One verified against a JWKS key is remembered at most as long as the key set
    is cached (JWT_JWKS_CACHE_SECONDS): a key withdrawn from the set stops vouching for
    its tokens as soon as it would have without the memo.
    """

    REMEMBERED = 4096

    def __init__(
        self,
        settings: Settings,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = settings.jwt_signing_secret
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._leeway = settings.jwt_leeway_seconds
        self._require_verified_email = settings.jwt_require_verified_email
        self._jwks_seconds = settings.jwt_jwks_cache_seconds
        self._wall_clock = wall_clock
        self._verified: dict[str, tuple[TokenClaims, float]] = {}  # token: claims, until
        self._jwks = (
            JwksCache(
                settings.jwt_jwks_url,
                ttl_seconds=settings.jwt_jwks_cache_seconds,
                client=http or httpx.AsyncClient(),
                clock=clock,
            )
            if settings.jwt_jwks_url
            else None
        )

    async def verify(self, token: str) -> TokenClaims:
        """Check signature, expiry, audience (and issuer); return the identity it carries."""
        now = self._wall_clock()
        remembered = self._verified.get(token)
        if remembered is not None:
            claims, until = remembered
            if now < until:
                return claims
            del self._verified[token]
        claims, expires_at, by_jwks = await self._verify(token)
        until = expires_at + self._leeway
        if by_jwks:
            until = min(until, now + self._jwks_seconds)
        if until > now:
            if len(self._verified) >= self.REMEMBERED:
                del self._verified[next(iter(self._verified))]  # the oldest
            self._verified[token] = (claims, until)
        return claims

    async def _verify(self, token: str) -> tuple[TokenClaims, float, bool]:
        """The token's identity, its expiry (epoch seconds) and whether a JWKS key signed it."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise InvalidTokenError(f"malformed token: {exc}") from None
        algorithm, kid = header.get("alg"), header.get("kid")
        if not isinstance(algorithm, str) or not isinstance(kid, str | None):
            raise InvalidTokenError("malformed token: 'alg' and 'kid' must be strings")
        key: Any
        if algorithm in HMAC_ALGORITHMS:
            key = self._secret
        elif algorithm in JWKS_ALGORITHMS:
            if self._jwks is None:
                raise InvalidTokenError(f"{algorithm} tokens are not accepted: no JWT_JWKS_URL set")
            jwk = await self._jwks.key(kid)
            if jwk.algorithm_name != algorithm:
                raise InvalidTokenError(f"key {kid!r} is not for {algorithm}")
            key = jwk.key
        else:
            raise InvalidTokenError(f"unsupported signing algorithm {algorithm!r}")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidTokenError("token has expired") from None
        except jwt.InvalidAudienceError:
            raise InvalidTokenError(f"token audience is not {self._audience!r}") from None
        except jwt.InvalidTokenError as exc:
            raise InvalidTokenError(str(exc) or type(exc).__name__) from None
        try:
            user_id = uuid.UUID(str(claims["sub"]))
        except ValueError:
            raise InvalidTokenError("claim 'sub' must be a UUID") from None
        try:
            email = email_address(claims.get("email"))
        except ValueError as exc:
            raise InvalidTokenError(f"claim 'email' {exc}") from None
        if self._require_verified_email and not _email_verified(claims):
            raise InvalidTokenError(
                "the token's email address is not verified (claim 'email_verified'); people "
                "join organizations by email, so an unverified one is refused "
                "(JWT_REQUIRE_VERIFIED_EMAIL=false if your identity provider verifies "
                "every address without saying so)"
            )
        identity = TokenClaims(user_id=user_id, email=email)
        return identity, float(claims["exp"]), algorithm in JWKS_ALGORITHMS


def _email_verified(claims: dict[str, Any]) -> bool:
    """`email_verified: true` (OpenID Connect), or in `user_metadata` (Supabase)."""
    metadata = claims.get("user_metadata")
    nested = metadata.get("email_verified") if isinstance(metadata, dict) else None
    return claims.get("email_verified") is True or nested is True


def issue_token(
    settings: Settings, *, user_id: uuid.UUID, email: str, ttl_seconds: int = 86_400
) -> str:
    """Sign an HS256 token the server accepts (for the CLI and tests)."""
    now = int(time.time())
    payload = {
        "sub": str(user_id),
        "email": email,
        "email_verified": True,  # whoever runs this vouches for the address
        "aud": settings.jwt_audience,
        "role": "authenticated",
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if settings.jwt_issuer:
        payload["iss"] = settings.jwt_issuer
    return jwt.encode(payload, settings.jwt_signing_secret, algorithm="HS256")


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated user and the organizations they belong to."""

    user_id: uuid.UUID
    email: str
    memberships: dict[uuid.UUID, Role]


@dataclass(frozen=True, slots=True)
class OrgContext:
    """The acting user inside the acting organization: what every tenant query is scoped by."""

    user_id: uuid.UUID
    email: str
    org_id: uuid.UUID
    role: Role

    @property
    def permissions(self) -> frozenset[str]:
        """Permission keys granted by this user's role in the organization."""
        return ROLE_PERMISSIONS[self.role]


async def verified_claims(request: Request, token: str) -> TokenClaims:
    """The identity `token` carries, once verified.

    Raises UnauthenticatedError for a token that cannot be trusted, UnavailableError when
    the identity provider's keys are unavailable.
    """
    verifier: TokenVerifier = request.app.state.token_verifier
    try:
        return await verifier.verify(token)
    except InvalidTokenError as exc:
        raise UnauthenticatedError(f"invalid token: {exc}") from None
    except KeysUnavailableError as exc:
        logger.error("%s", exc)
        raise UnavailableError("identity provider keys are unavailable") from None


async def authenticate(request: Request, token: str) -> Principal:
    """Verify `token` and provision its user, in transactions of their own (the web
    sign-in form; API requests look the user up in their own transaction instead).

    Raises what `verified_claims` raises, and EmailTakenError (a conflict) when the
    token's email belongs to another user.
    """
    claims = await verified_claims(request, token)
    with acting_as(DbActor(user_id=claims.user_id)):
        memberships = await user_service.resolve_user(
            instance_of(request).database, user_id=claims.user_id, email=claims.email
        )
    return Principal(user_id=claims.user_id, email=claims.email, memberships=memberships)


def org_context(principal: Principal, x_org_id: str | None) -> OrgContext:
    """The organization a request acts in: the only membership, or the one in X-Org-Id."""
    if x_org_id is not None:
        try:
            org_id = uuid.UUID(x_org_id)
        except ValueError:
            raise InvalidError(
                f"X-Org-Id must be an organization UUID, got {x_org_id!r}",
            ) from None
        role = principal.memberships.get(org_id)
        if role is None:
            raise ForbiddenError(f"you are not a member of organization {org_id}")
        return OrgContext(principal.user_id, principal.email, org_id, role)
    if not principal.memberships:
        raise ForbiddenError(
            "you are not a member of any organization: create one with POST /orgs "
            "or ask an admin to add you",
        )
    if len(principal.memberships) > 1:
        raise InvalidError(
            f"you belong to {len(principal.memberships)} organizations: "
            "name one with the X-Org-Id header (see GET /me)",
        )
    ((org_id, role),) = principal.memberships.items()
    return OrgContext(principal.user_id, principal.email, org_id, role)


def permitted(ctx: OrgContext, key: str) -> OrgContext:
    """`ctx` if its role grants permission `key`, else ForbiddenError saying which."""
    if key not in ctx.permissions:
        raise ForbiddenError(
            f"permission {key!r} is required; your role {ctx.role.value!r} lacks it",
        )
    return ctx
