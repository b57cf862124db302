"""Who is signed in, and what the dashboard shows them.

The API is the authority on roles: this only decides which pages and controls to draw. A
control drawn by mistake would still be refused (and audited) by the API.
"""

from dataclasses import dataclass

from dashboard.client import ApiError, ConcordClient

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
