"""A tiny OpenID Connect provider for tests: discovery, a JWKS of generated RSA keys, and
(for a real `st.login`) an authorization endpoint that signs in a preset user at once.

No identity provider runs on the test machine, so this one does, in the test process, over
real HTTP (`serve_in_thread`). Tokens are signed with PyJWT; keys are made with cryptography.
"""

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.support.servers import serve_in_thread

CLIENT_ID = "concord-dashboard"
CLIENT_SECRET = "test-client-secret"


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class OidcProvider:
    """Keys by kid; `published` kids appear in the JWKS (a rotation adds one, then signs with it)."""

    issuer: str = ""
    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    published: list[str] = field(default_factory=list)
    signing_kid: str = ""
    jwks_fetches: int = 0
    # The user the authorization endpoint signs in next (claims merged into the ID token).
    next_user: dict[str, Any] = field(default_factory=dict)
    _codes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def rotate(self) -> str:
        """Publish a new key and sign with it from now on; the old key stays published."""
        kid = f"key-{len(self.keys) + 1}-{secrets.token_hex(3)}"
        self.keys[kid] = new_rsa_key()
        self.published.append(kid)
        self.signing_kid = kid
        return kid

    def token(
        self,
        *,
        sub: str = "user-1",
        audience: str = CLIENT_ID,
        issuer: str | None = None,
        expires_in: float = 300,
        not_before: float | None = None,
        kid: str | None = None,
        key: Any = None,
        algorithm: str = "RS256",
        **claims: Any,
    ) -> str:
        """A token signed with the current key unless `key`/`kid` say otherwise."""
        now = time.time()
        body: dict[str, Any] = {
            "iss": self.issuer if issuer is None else issuer,
            "aud": audience,
            "sub": sub,
            "iat": int(now),
            "exp": int(now + expires_in),
            **claims,
        }
        if not_before is not None:
            body["nbf"] = int(not_before)
        kid = kid or self.signing_kid
        signing_key = self.keys[kid] if key is None else key
        return jwt.encode(body, signing_key, algorithm=algorithm, headers={"kid": kid})

    def jwks(self) -> dict[str, Any]:
        out = []
        for kid in self.published:
            jwk = RSAAlgorithm.to_jwk(self.keys[kid].public_key(), as_dict=True)
            out.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": out}

    def app(self) -> Starlette:
        async def discovery(_request: Request) -> Response:
            return JSONResponse(
                {
                    "issuer": self.issuer,
                    "jwks_uri": f"{self.issuer}/jwks",
                    "authorization_endpoint": f"{self.issuer}/authorize",
                    "token_endpoint": f"{self.issuer}/token",
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "token_endpoint_auth_methods_supported": [
                        "client_secret_basic",
                        "client_secret_post",
                    ],
                    "code_challenge_methods_supported": ["S256"],
                }
            )

        async def jwks(_request: Request) -> Response:
            self.jwks_fetches += 1
            return JSONResponse(self.jwks())

        async def authorize(request: Request) -> Response:
            # No login form: the preset user is signed in and sent straight back with a code.
            q = request.query_params
            code = secrets.token_urlsafe(16)
            self._codes[code] = {"nonce": q.get("nonce"), "client_id": q.get("client_id")}
            target = f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}"
            return RedirectResponse(target, status_code=302)

        async def token(request: Request) -> Response:
            form = await request.form()
            grant = self._codes.pop(str(form.get("code", "")), None)
            if grant is None:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            user = {"sub": "sso-user", **self.next_user}
            id_token = self.token(audience=CLIENT_ID, nonce=grant["nonce"], **user)
            return JSONResponse(
                {
                    "access_token": secrets.token_urlsafe(24),
                    "token_type": "Bearer",
                    "expires_in": 300,
                    "id_token": id_token,
                }
            )

        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", discovery),
                Route("/jwks", jwks),
                Route("/authorize", authorize),
                Route("/token", token, methods=["POST"]),
            ]
        )


@contextmanager
def running_provider() -> Iterator[OidcProvider]:
    """A provider served over HTTP with one published key; its issuer is its base URL."""
    provider = OidcProvider()
    provider.rotate()
    with serve_in_thread(provider.app()) as url:
        provider.issuer = url
        yield provider
