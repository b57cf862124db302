"""OpenID Connect bearer tokens: a JWT from the configured issuer becomes a Principal.

Concord API keys (`ck_...`) are looked up in the database (lineage.apikeys); any other bearer
is a JWT when CONCORD_OIDC_ISSUER is set. The signature is checked against the issuer's JWKS
(PyJWT's PyJWKClient: cached, refetched on an unknown `kid` at most once per cooldown), then
issuer, audience, expiry and not-before. The role comes from one claim (optionally mapped, for
a groups claim). A refused token says why only in broad terms (expired, wrong audience, bad
signature...): never which key, claim value or secret would have worked.
"""

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx
import jwt
from jwt import PyJWK, PyJWKClient

from api.settings import ApiSettings
from lineage.apikeys import Principal
from lineage.enums import Role

API_KEY_PREFIX = "ck_"
# The actor column holds 200 characters; a long e-mail claim must not fail the audit write.
_ACTOR_MAX = 200
# When a token maps to several roles, the most capable one wins: a user in both the viewers'
# and the operators' group is an operator.
_PRECEDENCE = (Role.ADMIN, Role.OPS, Role.FINANCE, Role.EXECUTIVE, Role.VIEWER, Role.INGEST)

# The first matching class names the reason; subclasses come before their bases.
_REASONS: Sequence[tuple[type[jwt.InvalidTokenError], str, str]] = (
    (jwt.ExpiredSignatureError, "token_expired", "the token has expired"),
    (jwt.InvalidSignatureError, "invalid_token", "bad signature"),
    (jwt.InvalidAudienceError, "invalid_token", "wrong audience"),
    (jwt.InvalidIssuerError, "invalid_token", "wrong issuer"),
    (jwt.ImmatureSignatureError, "invalid_token", "the token is not valid yet"),
    (jwt.InvalidAlgorithmError, "invalid_token", "algorithm not allowed"),
    (jwt.MissingRequiredClaimError, "invalid_token", "a required claim is missing"),
    (jwt.InvalidTokenError, "invalid_token", "malformed token"),
)


class TokenRejected(Exception):
    """A bearer that is not admitted: 401 (the token), 403 (its role) or 503 (the provider)."""

    def __init__(self, status: int, code: str, message: str, *, actor: str = "anonymous") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        # Only a token whose signature checked out names its user; anything else is anonymous.
        self.actor = actor


def looks_like_api_key(token: str) -> bool:
    return token.startswith(API_KEY_PREFIX)


class OidcVerifier:
    """Turns a bearer JWT into a Principal, or raises TokenRejected. One per API process."""

    def __init__(self, settings: ApiSettings) -> None:
        self._settings = settings
        self._jwks: PyJWKClient | None = None
        self._discovery_lock = asyncio.Lock()

    async def principal(self, token: str) -> Principal:
        claims = await self._verified_claims(token)
        subject = str(claims["sub"])
        actor = _actor(claims, self._settings.oidc_actor_claim, subject)
        role = self._role(claims, actor)
        return Principal(key_id=None, name=actor, role=role, subject=subject)

    async def _verified_claims(self, token: str) -> dict[str, Any]:
        s = self._settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise _rejected(exc) from None
        # Checked before any key is fetched: `none` and HS* never reach the network.
        if header.get("alg") not in s.oidc_algorithms:
            raise TokenRejected(
                401, "invalid_token", "the token is not valid: algorithm not allowed"
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected(401, "invalid_token", "the token is not valid: no key id (kid)")
        key = await self._signing_key(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=s.oidc_algorithms,
                audience=s.oidc_audience,
                issuer=s.oidc_issuer,
                leeway=s.oidc_leeway_s,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.InvalidTokenError as exc:
            raise _rejected(exc) from None
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise TokenRejected(401, "invalid_token", "the token is not valid: no subject")
        return claims

    async def _signing_key(self, kid: str) -> PyJWK:
        client = await self._jwks_client()
        try:
            # PyJWKClient fetches with urllib, which blocks: keep it off the event loop.
            return await asyncio.to_thread(client.get_signing_key, kid)
        except jwt.PyJWKClientConnectionError:
            raise _provider_unavailable("its signing keys could not be fetched") from None
        except jwt.PyJWKClientError:
            raise TokenRejected(
                401, "invalid_token", "the token is not valid: unknown signing key"
            ) from None

    async def _jwks_client(self) -> PyJWKClient:
        if self._jwks is not None:
            return self._jwks
        async with self._discovery_lock:
            if self._jwks is None:
                s = self._settings
                url = s.oidc_jwks_url or await self._discover_jwks_url()
                self._jwks = PyJWKClient(
                    url,
                    lifespan=s.oidc_jwks_cache_s,
                    cooldown_duration=s.oidc_jwks_refresh_cooldown_s,
                    timeout=s.oidc_http_timeout_s,
                )
            return self._jwks

    async def _discover_jwks_url(self) -> str:
        """`jwks_uri` from the issuer's discovery document; fetched once, on first use, so an
        identity provider that is down at start-up does not stop the API starting."""
        s = self._settings
        url = f"{s.oidc_issuer.rstrip('/')}/.well-known/openid-configuration"
        try:
            async with httpx.AsyncClient(timeout=s.oidc_http_timeout_s) as http:
                response = await http.get(url)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError):
            raise _provider_unavailable("its discovery document could not be read") from None
        if not isinstance(document, dict) or not isinstance(document.get("jwks_uri"), str):
            raise _provider_unavailable("its discovery document has no jwks_uri")
        # OpenID Connect Discovery 1.0 section 4.3: the document must name the issuer we asked.
        if document.get("issuer") != s.oidc_issuer:
            raise _provider_unavailable("its discovery document names another issuer")
        return str(document["jwks_uri"])

    def _role(self, claims: dict[str, Any], actor: str) -> Role:
        claim = self._settings.oidc_role_claim
        values = _claim_values(claims, claim)
        if not values:
            raise TokenRejected(
                403,
                "no_role",
                f"the token has no '{claim}' claim naming a Concord role",
                actor=actor,
            )
        mapping = self._settings.oidc_role_map or {r.value: r for r in Role}
        roles = {mapping[v] for v in values if v in mapping}
        for role in _PRECEDENCE:
            if role in roles:
                return role
        raise TokenRejected(
            403,
            "unknown_role",
            f"the token's '{claim}' claim names no Concord role "
            f"(roles: {', '.join(r.value for r in Role)})",
            actor=actor,
        )


def _claim_values(claims: dict[str, Any], path: str) -> list[str]:
    value: Any = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _actor(claims: dict[str, Any], claim: str, subject: str) -> str:
    value = claims.get(claim)
    # An address the provider says it has not verified is the user's own say-so: use the subject.
    if claim == "email" and claims.get("email_verified") is False:
        value = None
    name = value if isinstance(value, str) and value else subject
    return f"oidc:{name}"[:_ACTOR_MAX]


def _rejected(exc: jwt.InvalidTokenError) -> TokenRejected:
    for cls, code, reason in _REASONS:
        if isinstance(exc, cls):
            message = reason if code == "token_expired" else f"the token is not valid: {reason}"
            return TokenRejected(401, code, message)
    raise AssertionError("unreachable: InvalidTokenError is the last entry")  # pragma: no cover


def _provider_unavailable(why: str) -> TokenRejected:
    message = f"cannot check the token now: the identity provider failed ({why}); retry later"
    return TokenRejected(503, "identity_provider_unavailable", message)
