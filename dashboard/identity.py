"""Who is signed in, and what the dashboard shows them.

The API is the authority on roles: this only decides which pages and controls to draw. A
control drawn by mistake would still be refused (and audited) by the API.
"""

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from dashboard.client import ApiError, ConcordClient

# The API names a single sign-on user `oidc:<email or subject>` (api.oidc).
SSO_PREFIX = "oidc:"

LANDING = {
    "executive": "sla",
    "ops": "exceptions",
    "finance": "reconciliation",
    "viewer": "transactions",
}
READERS = frozenset({"viewer", "executive", "finance", "ops", "admin"})
OPERATORS = frozenset({"ops", "admin"})
FINANCE = frozenset({"finance", "admin"})
ADMINS = frozenset({"admin"})


@dataclass(frozen=True)
class Identity:
    name: str
    role: str
    # "api" when GET /v1/me answered; "probe" when the role was inferred from refusals.
    source: str

    @property
    def landing(self) -> str:
        """The page this role opens on."""
        return LANDING.get(self.role, "sla") if self.can_read else "no_access"

    @property
    def via_sso(self) -> bool:
        return self.name.startswith(SSO_PREFIX)

    @property
    def display_name(self) -> str:
        return self.name.removeprefix(SSO_PREFIX)

    @property
    def can_read(self) -> bool:
        return self.role in READERS

    @property
    def can_operate(self) -> bool:
        return self.role in OPERATORS

    @property
    def can_reconcile(self) -> bool:
        return self.role in FINANCE

    @property
    def is_admin(self) -> bool:
        return self.role in ADMINS


def forwarded_token(tokens: Mapping[str, Any]) -> str | None:
    """The token of `st.user.tokens` to send to the API as the bearer, if one is exposed.

    The ID token comes first: it is always a JWT, and its audience is the dashboard's client ID,
    which is what the API's CONCORD_OIDC_AUDIENCE names. An access token is used only when it is
    the one exposed (`expose_tokens = "access"`): some providers make it an opaque string or a
    token for another API, which the Concord API would refuse.
    """
    for kind in ("id", "access"):
        token = tokens.get(kind)
        if isinstance(token, str) and token:
            return token
    return None


def token_expired(token: str, *, now: float | None = None) -> bool:
    """True when a JWT's `exp` has passed. Read without checking the signature: the API
    checks it; this only spares the user an error page after their provider's token expires."""
    try:
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.InvalidTokenError:
        return False
    return isinstance(exp, int | float) and exp < (time.time() if now is None else now)


def key_label(token: str) -> str:
    """A key's public prefix, never the secret part."""
    return f"API key {token[:7]}…" if len(token) > 10 else "API key"


def whoami(client: ConcordClient) -> Identity:
    """The caller's name and role; raises ApiError for an unknown or revoked key."""
    try:
        me = client.me()
        return Identity(
            name=str(me.get("name") or key_label(client.token)), role=str(me["role"]), source="api"
        )
    except ApiError as exc:
        if not exc.unavailable:
            raise
    return _probe(client)


def _probe(client: ConcordClient) -> Identity:
    """Infer the role from which guards admit the key (used until the API has GET /v1/me).

    Each refusal below is written to the audit log as `denied` by the API; the bodies are
    deliberately invalid (a JSON list) so an admitted probe is refused with 422 and changes
    nothing.
    """
    name = key_label(client.token)
    status = client.probe("GET", "/v1/transactions?limit=1")
    if status == 401:
        raise ApiError(401, "invalid_api_key", "the API key is unknown or revoked")
    if status == 403:
        return Identity(name=name, role="ingest", source="probe")
    if status >= 400:
        raise ApiError(status, "unavailable", "the Concord API refused the sign-in check")
    if client.probe("GET", "/v1/audit?limit=1") == 200:
        return Identity(name=name, role="admin", source="probe")
    if client.probe("POST", "/v1/exceptions/0/assign", body=[]) == 422:
        return Identity(name=name, role="ops", source="probe")
    if client.probe("POST", "/v1/reconciliation/runs", body=[]) == 422:
        return Identity(name=name, role="finance", source="probe")
    # A viewer and an executive are admitted by the same guards; only GET /v1/me tells them apart.
    return Identity(name=name, role="viewer", source="probe")
