"""OpenID Connect bearer tokens against a real (test) identity provider over HTTP.

The provider (tests/support/oidc_provider.py) publishes discovery and a JWKS of generated RSA
keys; the API discovers it from CONCORD_OIDC_ISSUER like it would a real one.
"""

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.main import create_app
from api.settings import ApiSettings
from lineage.enums import Role
from lineage.models import AuditLog
from tests.api.helpers import audit_count, audit_rows, auth
from tests.api.test_role_matrix import EXPECTED, PUBLIC, _request, _routes
from tests.support.oidc_provider import CLIENT_ID, OidcProvider, new_rsa_key, running_provider
from tests.support.servers import serve_in_thread


@pytest.fixture
def provider() -> Iterator[OidcProvider]:
    with running_provider() as p:
        yield p


def oidc_settings(api_settings: ApiSettings, provider: OidcProvider, **extra: Any) -> ApiSettings:
    # Validated like the environment would be (model_copy would skip the validators).
    return ApiSettings(
        **{
            **api_settings.model_dump(),
            "oidc_issuer": provider.issuer,
            "oidc_audience": CLIENT_ID,
            # A rotated key is picked up on its first token (the default waits 30 s).
            "oidc_jwks_refresh_cooldown_s": 0,
            **extra,
        }
    )


@asynccontextmanager
async def api(settings: ApiSettings) -> AsyncIterator[httpx.AsyncClient]:
    with serve_in_thread(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            yield http


@pytest.fixture
async def oidc_client(
    api_settings: ApiSettings, provider: OidcProvider
) -> AsyncIterator[httpx.AsyncClient]:
    async with api(oidc_settings(api_settings, provider)) as http:
        yield http


def user_token(provider: OidcProvider, role: str, **claims: Any) -> str:
    defaults = {"email": f"{role}@example.com", "email_verified": True, "concord_role": role}
    return provider.token(sub=f"sub-{role}", **{**defaults, **claims})


async def last_audit(sessionmaker: async_sessionmaker[AsyncSession]) -> AuditLog:
    return (await audit_rows(sessionmaker))[-1]


async def test_every_role_from_a_token_is_admitted_exactly_where_its_key_would_be(
    oidc_client: httpx.AsyncClient,
    provider: OidcProvider,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    tokens = {role: user_token(provider, role.value) for role in Role}
    checked = 0
    for op in _routes():
        if (op.method, op.path) in PUBLIC:
            continue
        allowed = EXPECTED[(op.method, op.path)]
        path, kwargs = _request(op)
        for role, token in tokens.items():
            before = await audit_count(sessionmaker)
            response = await oidc_client.request(op.method, path, headers=auth(token), **kwargs)
            where = f"{op.method} {path} as OIDC {role}: {response.text[:200]}"
            if role in allowed:
                assert response.status_code not in (401, 403, 429), where
                assert response.status_code < 500, where
            else:
                assert response.status_code == 403, where
                assert response.json()["error"]["code"] == "forbidden", where
            if await audit_count(sessionmaker) > before:
                row = await last_audit(sessionmaker)
                assert row.actor == f"oidc:{role}@example.com", where
                assert row.role == role, where
            checked += 1
    assert checked == len(EXPECTED) * len(Role)


async def test_me_names_the_token_user_and_a_change_is_audited_under_it(
    oidc_client: httpx.AsyncClient,
    provider: OidcProvider,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    me = await oidc_client.get("/v1/me", headers=auth(user_token(provider, "ops")))
    assert me.status_code == 200, me.text
    assert me.json() == {"name": "oidc:ops@example.com", "role": "ops"}

    # An address the provider has not verified is not trusted as the name: the subject is.
    unverified = user_token(provider, "viewer", email_verified=False)
    me = await oidc_client.get("/v1/me", headers=auth(unverified))
    assert me.json()["name"] == "oidc:sub-viewer"

    # API keys still work next to tokens.
    me = await oidc_client.get("/v1/me", headers=auth(api_keys[Role.FINANCE]))
    assert me.json() == {"name": "test-finance", "role": "finance"}

    created = await oidc_client.post(
        "/v1/keys",
        json={"name": "made-by-sso", "role": "viewer"},
        headers=auth(user_token(provider, "admin")),
    )
    assert created.status_code == 201, created.text
    row = await last_audit(sessionmaker)
    assert (row.actor, row.role, row.outcome) == ("oidc:admin@example.com", "admin", "succeeded")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256_with_public_key(provider: OidcProvider, claims: dict[str, Any]) -> str:
    """The classic key-confusion forgery: HMAC-SHA256 keyed with the issuer's public key PEM.

    Built by hand because PyJWT itself refuses to use an asymmetric key as an HMAC secret.
    """
    public_pem = (
        provider.keys[provider.signing_kid]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": provider.signing_kid}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


# (name, how to make the token, status, code, words in the message)
BAD_TOKENS: list[tuple[str, Any, int, str, str]] = [
    ("expired", lambda p: user_token(p, "ops", expires_in=-120), 401, "token_expired", "expired"),
    (
        "wrong issuer",
        lambda p: user_token(p, "ops", issuer="https://evil.example"),
        401,
        "invalid_token",
        "wrong issuer",
    ),
    (
        "wrong audience",
        lambda p: user_token(p, "ops", audience="another-app"),
        401,
        "invalid_token",
        "wrong audience",
    ),
    (
        "bad signature",
        # The published kid, signed with a key the provider never published.
        lambda p: user_token(p, "ops", key=new_rsa_key()),
        401,
        "invalid_token",
        "bad signature",
    ),
    (
        "not yet valid",
        lambda p: user_token(p, "ops", not_before=time.time() + 3600),
        401,
        "invalid_token",
        "not valid yet",
    ),
    (
        "alg none",
        lambda p: jwt.encode(
            _claims_of(user_token(p, "admin")),
            "",
            algorithm="none",
            headers={"kid": p.signing_kid},
        ),
        401,
        "invalid_token",
        "algorithm not allowed",
    ),
    (
        "HS256 keyed with the public key",
        lambda p: _hs256_with_public_key(p, _claims_of(user_token(p, "admin"))),
        401,
        "invalid_token",
        "algorithm not allowed",
    ),
    (
        "unknown kid",
        lambda p: user_token(p, "ops", kid="no-such-key", key=new_rsa_key()),
        401,
        "invalid_token",
        "unknown signing key",
    ),
    (
        "no kid",
        lambda p: jwt.encode(
            _claims_of(user_token(p, "ops")), p.keys[p.signing_kid], algorithm="RS256"
        ),
        401,
        "invalid_token",
        "no key id",
    ),
    ("not a JWT", lambda _p: "not-a-jwt", 401, "invalid_token", "malformed"),
    (
        "no subject",
        lambda p: jwt.encode(
            {k: v for k, v in _claims_of(user_token(p, "ops")).items() if k != "sub"},
            p.keys[p.signing_kid],
            algorithm="RS256",
            headers={"kid": p.signing_kid},
        ),
        401,
        "invalid_token",
        "required claim",
    ),
    (
        "no role claim",
        lambda p: p.token(sub="sub-x", email="x@example.com"),
        403,
        "no_role",
        "no 'concord_role' claim",
    ),
    (
        "unknown role",
        lambda p: user_token(p, "superuser"),
        403,
        "unknown_role",
        "names no Concord role",
    ),
]


@pytest.mark.parametrize(
    ("make", "status", "code", "words"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_TOKENS],
)
async def test_a_bad_token_is_refused_with_its_reason_and_audited(
    oidc_client: httpx.AsyncClient,
    provider: OidcProvider,
    sessionmaker: async_sessionmaker[AsyncSession],
    make: Any,
    status: int,
    code: str,
    words: str,
) -> None:
    response = await oidc_client.get("/v1/transactions", headers=auth(make(provider)))

    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert words in error["message"]
    row = await last_audit(sessionmaker)
    assert row.outcome == "denied"
    assert row.action == "GET /v1/transactions"
    assert row.detail == {"status": status, "code": code, "reason": error["message"]}
    if status == 401:
        assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        # Nothing in an unverified token names anyone in the audit log.
        assert row.actor == "anonymous"
    else:
        # The signature held: the user is known, only the role is missing.
        assert row.actor.startswith("oidc:")
        assert row.role is None


async def test_a_rotated_key_is_fetched_once_and_both_keys_are_accepted(
    oidc_client: httpx.AsyncClient, provider: OidcProvider
) -> None:
    old = user_token(provider, "viewer")
    assert (await oidc_client.get("/v1/me", headers=auth(old))).status_code == 200
    assert (await oidc_client.get("/v1/me", headers=auth(old))).status_code == 200
    assert provider.jwks_fetches == 1, "the key set is cached between requests"

    provider.rotate()
    new = user_token(provider, "ops")
    me = await oidc_client.get("/v1/me", headers=auth(new))
    assert me.status_code == 200, me.text
    assert me.json()["role"] == "ops"
    assert provider.jwks_fetches == 2, "an unknown kid refetches the key set once"
    assert (await oidc_client.get("/v1/me", headers=auth(old))).status_code == 200
    assert provider.jwks_fetches == 2


async def test_unknown_kids_within_the_cooldown_do_not_refetch_the_key_set(
    api_settings: ApiSettings, provider: OidcProvider
) -> None:
    settings = oidc_settings(api_settings, provider, oidc_jwks_refresh_cooldown_s=3600)
    async with api(settings) as http:
        assert (await http.get("/v1/me", headers=auth(user_token(provider, "ops")))).is_success
        for n in range(3):
            forged = user_token(provider, "ops", kid=f"made-up-{n}", key=new_rsa_key())
            response = await http.get("/v1/me", headers=auth(forged))
            assert response.status_code == 401
            assert "unknown signing key" in response.json()["error"]["message"]
    assert provider.jwks_fetches == 1


async def test_a_groups_claim_maps_to_the_most_capable_role(
    api_settings: ApiSettings, provider: OidcProvider
) -> None:
    settings = oidc_settings(
        api_settings,
        provider,
        oidc_role_claim="realm_access.roles",
        oidc_role_map={"concord-viewers": "viewer", "concord-operators": "ops"},
    )
    async with api(settings) as http:

        def token(groups: list[str]) -> str:
            return provider.token(sub="g", realm_access={"roles": groups})

        both = await http.get(
            "/v1/me", headers=auth(token(["unrelated", "concord-viewers", "concord-operators"]))
        )
        assert both.json()["role"] == "ops"
        # A role name that is not in the map is not a role: the map is the whole truth.
        refused = await http.get("/v1/me", headers=auth(token(["admin", "unrelated"])))
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "unknown_role"


async def test_with_oidc_off_a_valid_token_is_just_an_unknown_key(
    client: httpx.AsyncClient, provider: OidcProvider
) -> None:
    response = await client.get("/v1/me", headers=auth(user_token(provider, "admin")))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


async def test_an_unreachable_identity_provider_is_503_not_a_bad_token(
    api_settings: ApiSettings, provider: OidcProvider
) -> None:
    # Port 9 (discard): nothing listens, so discovery fails.
    settings = oidc_settings(api_settings, provider, oidc_issuer="http://127.0.0.1:9")
    async with api(settings) as http:
        response = await http.get("/v1/me", headers=auth(user_token(provider, "ops")))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "identity_provider_unavailable"


@pytest.mark.parametrize("algorithms", [["HS256"], ["none"], ["RS256", "HS512"]])
def test_symmetric_and_none_algorithms_cannot_be_configured(algorithms: list[str]) -> None:
    with pytest.raises(ValidationError, match="not allowed for OIDC tokens"):
        ApiSettings(oidc_issuer="https://id.example", oidc_audience="a", oidc_algorithms=algorithms)


def test_an_issuer_without_an_audience_is_refused() -> None:
    with pytest.raises(ValidationError, match="CONCORD_OIDC_AUDIENCE is required"):
        ApiSettings(oidc_issuer="https://id.example")
