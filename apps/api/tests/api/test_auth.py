"""Token verification: every way a token can be wrong is a 401, and JWKS keys work."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI

from app.auth import InvalidTokenError, JwksCache, KeysUnavailableError, TokenVerifier
from app.core.config import Settings
from app.main import create_app
from tests.helpers.actors import Actors
from tests.helpers.settings import TEST_SECRET, make_settings


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": str(uuid.uuid4()),
        "email": "someone@example.com",
        "email_verified": True,
        "aud": "authenticated",
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _hs256(claims: dict[str, Any], secret: str = TEST_SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def _unsigned(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]


def _forged_header(header: dict[str, Any]) -> str:
    """A token whose header PyJWT would never write: the claims signed, the header swapped."""
    import base64
    import json

    encoded = base64.urlsafe_b64encode(json.dumps(header).encode()).decode().rstrip("=")
    return encoded + "." + _hs256(_claims()).split(".", 1)[1]


BAD_TOKENS = {
    "garbage": lambda: "not-a-jwt",
    "three garbage parts": lambda: "aaa.bbb.ccc",
    "expired": lambda: _hs256(_claims(exp=int(time.time()) - 3600)),
    "wrong audience": lambda: _hs256(_claims(aud="someone-else")),
    "no audience": lambda: _hs256(_claims(aud=None)),
    "wrong signature": lambda: _hs256(_claims(), secret="another-secret-" + "y" * 40),
    "alg none": lambda: _unsigned(_claims()),
    "HS512 with the right secret": lambda: jwt.encode(
        _claims(), TEST_SECRET * 2, algorithm="HS512"
    ),
    "no exp": lambda: _hs256(_claims(exp=None)),
    "sub not a uuid": lambda: _hs256(_claims(sub="user-42")),
    "no sub": lambda: _hs256(_claims(sub=None)),
    "no email": lambda: _hs256(_claims(email=None)),
    "email not an address": lambda: _hs256(_claims(email='"><svg/onload=alert(1)>@x.com')),
    "email not verified": lambda: _hs256(_claims(email_verified=False)),
    "email without email_verified": lambda: _hs256(_claims(email_verified=None)),
    "email_verified as a string": lambda: _hs256(_claims(email_verified="true")),
    "alg is a list": lambda: _forged_header({"alg": ["HS256"], "typ": "JWT"}),
    "kid is a number": lambda: _forged_header({"alg": "HS256", "kid": 7}),
    "header not json": lambda: "bm90IGpzb24." + _hs256(_claims()).split(".", 1)[1],
    "not yet valid": lambda: _hs256(_claims(nbf=int(time.time()) + 3600)),
    "RS256 without a JWKS configured": lambda: jwt.encode(
        _claims(), rsa.generate_private_key(public_exponent=65537, key_size=2048), algorithm="RS256"
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
async def test_bad_token_is_401_with_reason(client: httpx.AsyncClient, case: str) -> None:
    response = await client.get("/me", headers={"Authorization": f"Bearer {BAD_TOKENS[case]()}"})
    assert response.status_code == 401
    assert response.json()["detail"].startswith("invalid token:")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_missing_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/me")
    assert response.status_code == 401
    assert "Authorization: Bearer" in response.json()["detail"]


async def test_non_bearer_scheme_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 401


async def test_expired_token_says_expired(client: httpx.AsyncClient) -> None:
    token = _hs256(_claims(exp=int(time.time()) - 3600))
    response = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert response.json()["detail"] == "invalid token: token has expired"


async def test_first_token_provisions_the_user(client: httpx.AsyncClient) -> None:
    user_id = uuid.uuid4()
    token = _hs256(_claims(sub=str(user_id), email="New.Person@Example.com"))
    response = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json() == {
        "user_id": str(user_id),
        "email": "new.person@example.com",
        "memberships": [],
    }


async def test_supabase_marks_a_verified_email_in_user_metadata(
    client: httpx.AsyncClient,
) -> None:
    claims = _claims(email_verified=None, user_metadata={"email_verified": True})
    response = await client.get("/me", headers={"Authorization": f"Bearer {_hs256(claims)}"})
    assert response.status_code == 200, response.text


async def test_unverified_emails_are_accepted_when_the_setting_is_off() -> None:
    settings = make_settings(jwt_secret=TEST_SECRET, jwt_require_verified_email=False)
    claims = await TokenVerifier(settings).verify(_hs256(_claims(email_verified=None)))
    assert claims.email == "someone@example.com"
    with pytest.raises(InvalidTokenError, match="email_verified"):
        await TokenVerifier(make_settings(jwt_secret=TEST_SECRET)).verify(
            _hs256(_claims(email_verified=False))
        )


async def test_email_change_in_token_updates_user(client: httpx.AsyncClient) -> None:
    user_id = str(uuid.uuid4())
    for email in ("old@example.com", "new@example.com"):
        token = _hs256(_claims(sub=user_id, email=email))
        response = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
        assert response.json()["email"] == email


async def test_email_of_another_user_is_409(client: httpx.AsyncClient) -> None:
    first = _hs256(_claims(email="taken@example.com"))
    assert (
        await client.get("/me", headers={"Authorization": f"Bearer {first}"})
    ).status_code == 200
    second = _hs256(_claims(email="taken@example.com"))
    response = await client.get("/me", headers={"Authorization": f"Bearer {second}"})
    assert response.status_code == 409
    assert "already belongs to another user" in response.json()["detail"]


async def test_concurrent_first_requests_provision_once(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    actor = actors.user()
    responses = await _gather(*(client.get("/me", headers=actor.headers) for _ in range(10)))
    assert [r.status_code for r in responses] == [200] * 10


async def _gather(*aws: Any) -> list[httpx.Response]:
    import asyncio

    return list(await asyncio.gather(*aws))


# --- JWKS (RS256 / ES256 as hosted identity providers issue them) ------------------------


class _JwksServer:
    """A JWKS endpoint on loopback whose key set the test can change."""

    def __init__(self) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        self.hits = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits += 1
                body = json.dumps(owner.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def publish(self, *keys: tuple[str, Any, str]) -> None:
        entries = []
        for kid, private_key, alg in keys:
            jwk = json.loads(
                jwt.algorithms.get_default_algorithms()[alg].to_jwk(private_key.public_key())
            )
            entries.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})
        self.jwks = {"keys": entries}


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[_JwksServer]:
    server = _JwksServer()
    yield server
    server.server.shutdown()


@pytest.fixture
async def jwks_app(app: FastAPI, settings: Settings, jwks_server: _JwksServer) -> Any:
    """A second app on the same (migrated) database that also trusts the JWKS server."""
    jwks_settings = make_settings(
        database_url=settings.database_url,
        data_dir=settings.data_dir,
        jwt_secret=TEST_SECRET,
        jwt_jwks_url=jwks_server.url,
    )
    application: FastAPI = create_app(jwks_settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


@pytest.mark.parametrize(("alg", "key"), [("RS256", RSA_KEY), ("ES256", EC_KEY)])
async def test_jwks_token_is_accepted(
    jwks_app: httpx.AsyncClient, jwks_server: _JwksServer, alg: str, key: Any
) -> None:
    jwks_server.publish(("k1", key, alg))
    token = jwt.encode(
        _claims(email=f"{alg}@example.com"), key, algorithm=alg, headers={"kid": "k1"}
    )
    response = await jwks_app.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.json()["email"] == f"{alg.lower()}@example.com"


async def test_jwks_rotation_fetches_new_key(jwks_server: _JwksServer) -> None:
    now = [1000.0]
    verifier = TokenVerifier(
        make_settings(jwt_secret=TEST_SECRET, jwt_jwks_url=jwks_server.url), clock=lambda: now[0]
    )
    jwks_server.publish(("old", RSA_KEY, "RS256"))
    old = jwt.encode(_claims(), RSA_KEY, algorithm="RS256", headers={"kid": "old"})
    await verifier.verify(old)
    hits = jwks_server.hits
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks_server.publish(("new", new_key, "RS256"))
    new = jwt.encode(_claims(), new_key, algorithm="RS256", headers={"kid": "new"})
    # Just after a fetch, an unknown kid does not trigger another (no refetch storms)...
    now[0] += 5
    with pytest.raises(InvalidTokenError, match="no signing key with kid 'new'"):
        await verifier.verify(new)
    assert jwks_server.hits == hits
    # ...but once the minimum interval has passed, it does, and the new key verifies.
    now[0] += 30
    claims = await verifier.verify(new)
    assert claims.email == "someone@example.com"
    assert jwks_server.hits == hits + 1
    await verifier.verify(new)
    assert jwks_server.hits == hits + 1  # cached


async def test_a_down_key_endpoint_is_not_asked_again_for_a_few_seconds() -> None:
    now, requests, up = [1000.0], [], [False]
    public = jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key(), as_dict=True)

    def endpoint(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if not up[0]:
            return httpx.Response(503, text="identity provider down")
        return httpx.Response(200, json={"keys": [{**public, "kid": "k1", "alg": "RS256"}]})

    verifier = TokenVerifier(
        make_settings(jwt_secret=TEST_SECRET, jwt_jwks_url="https://idp.example/jwks"),
        http=httpx.AsyncClient(transport=httpx.MockTransport(endpoint)),
        clock=lambda: now[0],
    )
    token = jwt.encode(_claims(), RSA_KEY, algorithm="RS256", headers={"kid": "k1"})
    for step in (0.0, 1.0, 2.0):  # one request to the endpoint, then refusals from memory
        now[0] += step
        with pytest.raises(KeysUnavailableError, match="503"):
            await verifier.verify(token)
    assert len(requests) == 1
    up[0], now[0] = True, now[0] + JwksCache.FAILURE_BACKOFF
    assert (await verifier.verify(token)).email == "someone@example.com"
    assert len(requests) == 2


async def test_jwks_unknown_kid_and_forged_key_are_401(
    jwks_app: httpx.AsyncClient, jwks_server: _JwksServer
) -> None:
    jwks_server.publish(("k1", RSA_KEY, "RS256"))
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(_claims(), stranger, algorithm="RS256", headers={"kid": "k1"})
    response = await jwks_app.get("/me", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    unknown = jwt.encode(_claims(), stranger, algorithm="RS256", headers={"kid": "nope"})
    response = await jwks_app.get("/me", headers={"Authorization": f"Bearer {unknown}"})
    assert response.status_code == 401
    assert "kid" in response.json()["detail"]


async def test_hs256_signed_with_public_key_is_refused(jwks_server: _JwksServer) -> None:
    """Algorithm confusion: an HS256 token 'signed' with the RSA public key is not accepted."""
    jwks_server.publish(("k1", RSA_KEY, "RS256"))
    verifier = TokenVerifier(make_settings(jwt_secret=TEST_SECRET, jwt_jwks_url=jwks_server.url))
    from cryptography.hazmat.primitives import serialization

    public_pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # PyJWT refuses to sign this, so the token is assembled by hand.
    segments = [
        base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=")
        for part in ({"alg": "HS256", "typ": "JWT", "kid": "k1"}, _claims())
    ]
    signing_input = b".".join(segments)
    signature = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    forged = (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()
    with pytest.raises(InvalidTokenError):
        await verifier.verify(forged)


async def test_jwks_unreachable_is_503(app: FastAPI, settings: Settings) -> None:
    from tests.helpers.processes import free_port

    dead = make_settings(
        database_url=settings.database_url,
        data_dir=settings.data_dir,
        jwt_secret=TEST_SECRET,
        jwt_jwks_url=f"http://127.0.0.1:{free_port()}/jwks.json",
    )
    application = create_app(dead)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            token = jwt.encode(_claims(), RSA_KEY, algorithm="RS256", headers={"kid": "k1"})
            response = await http.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503
    assert response.json()["detail"] == "identity provider keys are unavailable"


# --- verified tokens are remembered, never past their expiry ---------------------------------


@pytest.fixture
def decodings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens PyJWT is asked to verify from now on."""
    seen: list[str] = []
    decode = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(token)
        return decode(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    return seen


async def test_a_verified_token_is_remembered_until_it_expires(decodings: list[str]) -> None:
    now = [time.time()]
    settings = make_settings(jwt_secret=TEST_SECRET, jwt_leeway_seconds=30)
    verifier = TokenVerifier(settings, wall_clock=lambda: now[0])
    expires = int(now[0]) + 600
    token = _hs256(_claims(exp=expires))
    for _ in range(3):
        assert (await verifier.verify(token)).email == "someone@example.com"
    assert len(decodings) == 1
    now[0] = expires + 29.9  # within the leeway PyJWT grants too
    await verifier.verify(token)
    assert len(decodings) == 1
    now[0] = expires + 30  # past it: checked again from scratch (PyJWT has the real time)
    await verifier.verify(token)
    assert len(decodings) == 2


async def test_a_tampered_copy_of_a_remembered_token_is_still_refused() -> None:
    verifier = TokenVerifier(make_settings(jwt_secret=TEST_SECRET))
    token = _hs256(_claims())
    await verifier.verify(token)
    header_and_claims, _signature = token.rsplit(".", 1)
    forged = f"{header_and_claims}.{_hs256(_claims(), secret='x' * 40).rsplit('.', 1)[1]}"
    with pytest.raises(InvalidTokenError, match="Signature"):
        await verifier.verify(forged)


async def test_a_jwks_token_is_remembered_no_longer_than_the_key_set(
    jwks_server: _JwksServer, decodings: list[str]
) -> None:
    jwks_server.publish(("k1", RSA_KEY, "RS256"))
    now = [time.time()]
    settings = make_settings(
        jwt_secret=TEST_SECRET, jwt_jwks_url=jwks_server.url, jwt_jwks_cache_seconds=60
    )
    verifier = TokenVerifier(settings, wall_clock=lambda: now[0])
    token = jwt.encode(_claims(), RSA_KEY, algorithm="RS256", headers={"kid": "k1"})
    await verifier.verify(token)
    now[0] += 59
    await verifier.verify(token)
    assert len(decodings) == 1
    now[0] += 2
    await verifier.verify(token)
    assert len(decodings) == 2


async def test_the_memo_keeps_the_most_recent_tokens_only(
    monkeypatch: pytest.MonkeyPatch, decodings: list[str]
) -> None:
    monkeypatch.setattr(TokenVerifier, "REMEMBERED", 2)
    verifier = TokenVerifier(make_settings(jwt_secret=TEST_SECRET))
    first, second, third = (_hs256(_claims(sub=str(uuid.uuid4()))) for _ in range(3))
    for token in (first, second, third, third, second):
        await verifier.verify(token)
    assert decodings == [first, second, third]
    await verifier.verify(first)  # the oldest was forgotten when the third came
    assert decodings == [first, second, third, first]
