"""Every route x every role and anonymous, generated from the application's route table.

Who may call a route is read from the route itself (its RoleGuard dependency). EXPECTED pins
that down: a new route, or a route whose roles change, fails here until it is declared.
"""

from dataclasses import dataclass
from typing import Any

import httpx
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.deps import RoleGuard
from api.main import create_app
from api.settings import ApiSettings
from lineage.enums import Role
from tests.api.helpers import audit_count, auth

READ = frozenset({Role.VIEWER, Role.EXECUTIVE, Role.FINANCE, Role.OPS, Role.ADMIN})
OPS = frozenset({Role.OPS, Role.ADMIN})
FINANCE = frozenset({Role.FINANCE, Role.ADMIN})
ADMIN = frozenset({Role.ADMIN})
INGEST = frozenset({Role.INGEST, Role.ADMIN})

# Routes anyone may call: health, metrics, and the webhook (authenticated by its signature).
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("POST", "/v1/webhooks/stripe"),
    ("POST", "/v1/webhooks/hubspot"),
}
EXPECTED: dict[tuple[str, str], frozenset[Role]] = {
    ("POST", "/v1/events"): INGEST,
    ("GET", "/v1/me"): frozenset(Role),
    ("GET", "/v1/transactions"): READ,
    ("GET", "/v1/transactions/{correlation_id}"): READ,
    ("POST", "/v1/transactions/{correlation_id}/replay"): OPS,
    ("POST", "/v1/transactions/{correlation_id}/resolve"): OPS,
    ("GET", "/v1/lineage/{correlation_id}"): READ,
    ("GET", "/v1/search"): READ,
    ("GET", "/v1/exceptions"): READ,
    ("POST", "/v1/exceptions/{exception_id}/assign"): OPS,
    ("POST", "/v1/replays"): OPS,
    ("GET", "/v1/replays"): READ,
    ("GET", "/v1/replays/{bulk_id}"): READ,
    ("POST", "/v1/replays/{bulk_id}/cancel"): OPS,
    ("GET", "/v1/sla/summary"): READ,
    ("GET", "/v1/sla/timeseries"): READ,
    ("GET", "/v1/reconciliation/runs"): READ,
    ("POST", "/v1/reconciliation/runs"): FINANCE,
    ("GET", "/v1/reconciliation/runs/{run_id}"): READ,
    ("GET", "/v1/mismatches"): READ,
    ("GET", "/v1/mismatches/{mismatch_id}"): READ,
    ("POST", "/v1/mismatches/{mismatch_id}/resolve"): FINANCE,
    ("POST", "/v1/mismatches/{mismatch_id}/replay"): OPS | FINANCE,
    ("GET", "/v1/operations"): READ,
    ("GET", "/v1/audit"): ADMIN,
    ("POST", "/v1/keys"): ADMIN,
    ("GET", "/v1/keys"): ADMIN,
    ("POST", "/v1/keys/{key_id}/revoke"): ADMIN,
}
# Intake records events in the inbox, not in the audit log, when it succeeds.
NOT_AUDITED_ON_SUCCESS = {("POST", "/v1/events")}
IDENTITIES: list[Role | None] = [None, *Role]


def _guard(dependant: Dependant) -> RoleGuard | None:
    for dep in dependant.dependencies:
        if isinstance(dep.call, RoleGuard):
            return dep.call
        found = _guard(dep)
        if found is not None:
            return found
    return None


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    dependant: Dependant


def _routes() -> list[Operation]:
    """Every method of every API route, as the app mounted it (prefixes applied)."""
    app = create_app(ApiSettings(database_url="sqlite:///unused.db"))
    ops = []
    for context in iter_route_contexts(app.routes):
        if not isinstance(context.original_route, APIRoute):
            continue
        dependant = context.dependant
        assert isinstance(dependant, Dependant)
        assert context.path
        assert context.methods
        ops += [Operation(m, context.path, dependant) for m in sorted(context.methods)]
    return ops


def test_every_route_declares_its_roles() -> None:
    seen = set()
    for op in _routes():
        key = (op.method, op.path)
        seen.add(key)
        guard = _guard(op.dependant)
        if key in PUBLIC:
            assert guard is None, f"{key} is declared public but has a role guard"
            continue
        assert guard is not None, f"{key} has no role guard and is not declared public"
        assert key in EXPECTED, f"{key} is new: declare its roles in EXPECTED"
        assert guard.roles == EXPECTED[key], f"{key} admits {sorted(guard.roles)}"
    assert seen == PUBLIC | set(EXPECTED), "EXPECTED or PUBLIC names a route that is gone"


def _request(op: Operation) -> tuple[str, dict[str, Any]]:
    path = op.path
    for param in op.dependant.path_params:
        value = "999999999" if param.field_info.annotation is int else "01000000-0000-7000-8000-0"
        path = path.replace("{" + param.name + "}", value)
    kwargs: dict[str, Any] = {}
    if op.path == "/v1/search":
        kwargs["params"] = {"q": "nothing"}
    if op.method == "POST":
        kwargs["json"] = {}
    return path, kwargs


async def test_role_matrix_over_http(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    checked = 0
    for op in _routes():
        method = op.method
        if (method, op.path) in PUBLIC:
            continue
        allowed = EXPECTED[(method, op.path)]
        path, kwargs = _request(op)
        for identity in IDENTITIES:
            headers = auth(api_keys[identity]) if identity else {}
            before = await audit_count(sessionmaker)
            response = await client.request(method, path, headers=headers, **kwargs)
            written = await audit_count(sessionmaker) - before
            where = f"{method} {path} as {identity or 'anonymous'}: {response.text[:200]}"
            assert response.status_code < 500, where
            if response.status_code >= 400:
                assert set(response.json()["error"]) == {"code", "message", "details"}, where
            if identity is None:
                assert response.status_code == 401, where
            elif identity not in allowed:
                assert response.status_code == 403, where
            else:
                assert response.status_code not in (401, 403, 429), where
            denied = identity is None or identity not in allowed
            # A mutating call leaves exactly one row, whatever its outcome; a read only if denied.
            mutating = method != "GET" and (
                (method, op.path) not in NOT_AUDITED_ON_SUCCESS or response.status_code >= 400
            )
            expected_rows = 1 if denied or mutating else 0
            assert written == expected_rows, f"{where}: {written} audit rows"
            checked += 1
    assert checked == len(EXPECTED) * len(IDENTITIES)


async def test_no_route_edits_or_deletes_audit_rows(
    client: httpx.AsyncClient, api_keys: dict[Role, str]
) -> None:
    for method in ("PUT", "PATCH", "DELETE"):
        response = await client.request(method, "/v1/audit", headers=auth(api_keys[Role.ADMIN]))

        assert response.status_code == 405
        assert response.json()["error"]["code"] == "method_not_allowed"
