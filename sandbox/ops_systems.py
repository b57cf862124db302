"""Provisioning (enable or disable a tenant) and support (open a ticket), idempotent by external ID.

Support follows Zendesk's ticket API shape (`/api/v2/tickets`, a `ticket` envelope and a native
`external_id`); provisioning has no common vendor, so its small JSON API is ours.
"""

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from sandbox.fault_middleware import FaultMiddleware, faults_router, operation_at
from sandbox.faults import FaultController
from sandbox.store import RecordStore, iso, utc_now

PRIORITIES = frozenset({"low", "normal", "high", "urgent"})


@dataclass
class OpsState:
    store: RecordStore
    lock: asyncio.Lock


async def get_state(request: Request) -> OpsState:
    state: OpsState = request.app.state.ops
    return state


StateDep = Annotated[OpsState, Depends(get_state)]


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "description": message}, status_code=status)


def _fault_body(_status: int, message: str, reason: str) -> dict[str, Any]:
    return {"error": reason, "description": message}


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise ValueError(f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


tenants = APIRouter(prefix="/v1/tenants", tags=["provisioning"])


def _tenant_json(
    body: dict[str, Any], record_id: str, created: str, updated: str
) -> dict[str, Any]:
    return {"id": record_id, **body, "created_at": created, "updated_at": updated}


async def _set_tenant(
    state: OpsState, external_id: str, changes: dict[str, Any]
) -> tuple[dict[str, Any], bool]:
    store = state.store
    async with state.lock:
        store.count_create("tenant", external_id)
        existing = store.find("tenant", external_id)
        if existing is None:
            body = {
                "external_id": external_id,
                "name": external_id,
                "plan": None,
                "enabled": True,
                **changes,
            }
            record_id = f"tn_{store.next_number('tenant')}"
            saved = store.insert("tenant", record_id, external_id=external_id, body=body, meta={})
            created = True
        else:
            saved = store.update("tenant", existing.id, body={**existing.body, **changes})
            created = False
    return _tenant_json(saved.body, saved.id, iso(saved.created_at), iso(saved.updated_at)), created


@tenants.put("/{external_id}")
async def upsert_tenant(external_id: str, request: Request, state: StateDep) -> JSONResponse:
    """Create or update a tenant; repeating the call changes nothing further (201, then 200)."""
    try:
        body = await _json(request)
    except ValueError as exc:
        return _error(400, "invalid_request", str(exc))
    changes: dict[str, Any] = {k: body[k] for k in ("name", "plan", "enabled") if k in body}
    if "enabled" in changes and not isinstance(changes["enabled"], bool):
        return _error(422, "invalid_enabled", "enabled must be true or false")
    tenant, created = await _set_tenant(state, external_id, changes)
    return JSONResponse({"tenant": tenant}, status_code=201 if created else 200)


@tenants.post("/{external_id}/{action}")
async def enable_or_disable(external_id: str, action: str, state: StateDep) -> JSONResponse:
    if action not in {"enable", "disable"}:
        return _error(404, "not_found", f"no action {action!r}")
    async with state.lock:
        exists = state.store.find("tenant", external_id) is not None
    if not exists:
        return _error(404, "not_found", f"no tenant with external_id {external_id!r}")
    tenant, _ = await _set_tenant(state, external_id, {"enabled": action == "enable"})
    return JSONResponse({"tenant": tenant})


@tenants.get("/{external_id}")
async def get_tenant(external_id: str, state: StateDep) -> JSONResponse:
    async with state.lock:
        found = state.store.find("tenant", external_id)
    if found is None:
        return _error(404, "not_found", f"no tenant with external_id {external_id!r}")
    return JSONResponse(
        {"tenant": _tenant_json(found.body, found.id, iso(found.created_at), iso(found.updated_at))}
    )


tickets = APIRouter(prefix="/api/v2/tickets", tags=["support"])


def _ticket_json(record_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"id": int(record_id), "url": f"/api/v2/tickets/{record_id}.json", **body}


@tickets.post("")
async def create_ticket(request: Request, state: StateDep) -> JSONResponse:
    """Open a ticket; a second call with the same external_id answers the first ticket (200)."""
    try:
        ticket = (await _json(request)).get("ticket")
        if not isinstance(ticket, dict):
            raise ValueError("the body must be {'ticket': {...}}")
        external_id, subject = ticket.get("external_id"), ticket.get("subject")
        if not isinstance(external_id, str) or not external_id:
            raise ValueError("ticket.external_id is required")
        if not isinstance(subject, str) or not subject:
            raise ValueError("ticket.subject is required")
        priority = ticket.get("priority") or "normal"
        if priority not in PRIORITIES:
            raise ValueError(f"ticket.priority must be one of {sorted(PRIORITIES)}")
    except ValueError as exc:
        return _error(422, "RecordInvalid", str(exc))
    store = state.store
    async with state.lock:
        store.count_create("ticket", external_id)
        existing = store.find("ticket", external_id)
        if existing is not None:
            return JSONResponse({"ticket": _ticket_json(existing.id, existing.body)})
        record_id = str(store.next_number("ticket"))
        raw_comment = ticket.get("comment")
        comment: dict[str, Any] = raw_comment if isinstance(raw_comment, dict) else {}
        body = {
            "external_id": external_id,
            "subject": subject,
            "description": comment.get("body", ""),
            "priority": priority,
            "status": "new",
            "tags": list(ticket.get("tags") or []),
            "created_at": iso(utc_now()),
            "correlation_id": request.headers.get("X-Correlation-ID"),
        }
        store.insert("ticket", record_id, external_id=external_id, body=body, meta={})
    return JSONResponse({"ticket": _ticket_json(record_id, body)}, status_code=201)


@tickets.get("")
async def list_tickets(state: StateDep, external_id: str | None = None) -> JSONResponse:
    async with state.lock:
        rows = state.store.select("ticket", limit=10_000_000)
    found = [
        _ticket_json(r.id, r.body)
        for r in rows
        if external_id is None or r.external_id == external_id
    ]
    return JSONResponse({"tickets": found, "count": len(found), "next_page": None})


@tickets.get("/{ticket_id}")
async def get_ticket(ticket_id: str, state: StateDep) -> JSONResponse:
    async with state.lock:
        found = state.store.get("ticket", ticket_id.removesuffix(".json"))
    if found is None:
        return _error(404, "RecordNotFound", "Not found")
    return JSONResponse({"ticket": _ticket_json(found.id, found.body)})


admin = APIRouter(prefix="/_admin", tags=["admin"])


@admin.get("/ledger")
async def ledger(state: StateDep) -> dict[str, Any]:
    async with state.lock:
        calls = state.store.create_calls()
        rows = state.store.select(limit=10_000_000)
    return {
        "records": [
            {
                "type": r.type,
                "id": r.id,
                "external_id": r.external_id,
                "created_at": iso(r.created_at),
                "create_calls": calls.get((r.type, r.external_id or ""), 0),
                "enabled": r.body.get("enabled"),
                "status": r.body.get("status"),
            }
            for r in rows
        ]
    }


def _create(
    system: str,
    router: APIRouter,
    op_index: int,
    data_dir: Path | None,
    faults: FaultController | None,
) -> FastAPI:
    controller = faults or FaultController()
    app = FastAPI(title=f"Sandbox {system}")
    app.state.ops = OpsState(
        RecordStore(data_dir / f"{system}.sqlite3" if data_dir else None), asyncio.Lock()
    )
    app.include_router(router)
    app.include_router(admin)
    app.include_router(faults_router(controller))
    app.add_middleware(
        FaultMiddleware,
        system=system,
        controller=controller,
        error_body=_fault_body,
        operation_of=operation_at(op_index),
    )
    return app


def create_provisioning_app(
    *, data_dir: Path | None = None, faults: FaultController | None = None
) -> FastAPI:
    """Operations are named `tenants`, e.g. `provisioning.tenants:503=0.1`."""
    return _create("provisioning", tenants, 1, data_dir, faults)


def create_support_app(
    *, data_dir: Path | None = None, faults: FaultController | None = None
) -> FastAPI:
    """Operations are named `tickets`, e.g. `support.tickets:latency_ms=200`."""
    return _create("support", tickets, 2, data_dir, faults)
