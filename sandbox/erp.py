"""A NetSuite-REST-shaped ERP simulator: five record types, idempotent creates, upserts by
external ID, lists by period, drift, and a ground-truth ledger.

An outside world: it imports nothing of Concord's, so it cannot agree with Concord by accident.
"""

import asyncio
import copy
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse

from sandbox.fault_middleware import FaultMiddleware, faults_router, operation_at
from sandbox.faults import FaultController
from sandbox.netsuite_records import PARSERS, Parsed, UserError, load_body, places, render, total
from sandbox.store import RecordStore, Stored, iso, utc_now

SYSTEM = "erp"
RECORD_TYPES = tuple(PARSERS)

# NetSuite answers errors as RFC 9457 problem details with its own `o:` extensions.
_RFC = "https://www.rfc-editor.org/rfc/rfc9110.html#section-"
_PROBLEM_TYPES = {
    400: (f"{_RFC}15.5.1", "Bad Request"),
    404: (f"{_RFC}15.5.5", "Not Found"),
    409: (f"{_RFC}15.5.10", "Conflict"),
    422: (f"{_RFC}15.5.21", "Unprocessable Content"),
    429: ("https://www.rfc-editor.org/rfc/rfc6585.html#section-4", "Too Many Requests"),
    500: (f"{_RFC}15.6.1", "Internal Server Error"),
    502: (f"{_RFC}15.6.3", "Bad Gateway"),
    503: (f"{_RFC}15.6.4", "Service Unavailable"),
    504: (f"{_RFC}15.6.5", "Gateway Timeout"),
}
_FAULT_CODES = {429: "CONCURRENCY_LIMIT_EXCEEDED", 422: "INVALID_CONTENT", 504: "TIMEOUT"}


@dataclass
class ErpState:
    store: RecordStore
    faults: FaultController
    lock: asyncio.Lock


async def get_erp_state(request: Request) -> ErpState:
    state: ErpState = request.app.state.erp
    return state


ErpStateDep = Annotated[ErpState, Depends(get_erp_state)]


def problem(status: int, code: str, detail: str) -> dict[str, Any]:
    problem_type, title = _PROBLEM_TYPES[status]
    return {
        "type": problem_type,
        "title": title,
        "status": status,
        "o:errorDetails": [{"detail": detail, "o:errorCode": code}],
    }


def netsuite_error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse(problem(status, code, detail), status_code=status)


def _fault_body(status: int, message: str, _reason: str) -> dict[str, Any]:
    return problem(status, _FAULT_CODES.get(status, "UNEXPECTED_ERROR"), message)


def _not_found(what: str) -> JSONResponse:
    return netsuite_error(404, "NONEXISTENT_ID", f"The record instance {what} does not exist")


def _record_url(request: Request, record_type: str, record_id: str) -> str:
    # url_for keeps the mount prefix (/erp), which request.base_url drops.
    return str(request.url_for("get_record", record_type=record_type, record_id=record_id))


def record_json(request: Request, record: Stored) -> dict[str, Any]:
    body = render(record.body)
    if record.type == "invoice":
        for n, line in enumerate(body["item"]["items"], start=1):
            line["line"] = n
    money = total(record.type, record.body)
    if money is not None:
        body["total"] = float(money)
    return {
        "id": record.id,
        **body,
        "createdDate": iso(record.created_at),
        "lastModifiedDate": iso(record.updated_at),
        "links": [{"rel": "self", "href": _record_url(request, record.type, record.id)}],
    }


def apply_drift(record_type: str, body: dict[str, Any], kinds: frozenset[str]) -> dict[str, Any]:
    """Store something other than what was sent, so reconciliation has a real difference."""
    body = copy.deepcopy(body)
    currency = body.get("currency", {}).get("refName", "USD")
    if "drift_amount" in kinds:
        unit = Decimal(1).scaleb(-places(currency))
        if record_type == "invoice":
            line = body["item"]["items"][0]
            line["amount"] = str(
                Decimal(line["amount"])
                + max(unit, abs(Decimal(line["amount"])) / 100).quantize(unit)
            )
        elif record_type == "customerpayment":
            body["payment"] = str(Decimal(body["payment"]) + unit)
    if "drift_currency" in kinds and "currency" in body:
        body["currency"] = {"refName": "EUR" if currency != "EUR" else "USD"}
    if "drift_status" in kinds and record_type == "invoice":
        body["status"] = {"id": "D", "refName": "Pending Approval"}
    return body


def _parse(record_type: str, raw: bytes, *, external_id: str | None = None) -> Parsed:
    body = load_body(raw)
    # The eid in the path names the record; a different one in the body is a contradiction.
    if external_id is not None and body.setdefault("externalId", external_id) != external_id:
        raise UserError(f"externalId {body['externalId']!r} differs from eid:{external_id}")
    return PARSERS[record_type](body, utc_now().date())


def _unknown_type(record_type: str) -> JSONResponse | None:
    if record_type in PARSERS:
        return None
    return netsuite_error(404, "INVALID_RECORD_TYPE", f"Record type {record_type!r} does not exist")


async def _write(
    request: Request, state: ErpState, record_type: str, parsed: Parsed, *, upsert: bool
) -> Response:
    key = request.headers.get("Idempotency-Key")
    store = state.store
    async with state.lock:
        store.count_create(record_type, parsed.external_id)
        existing = store.find(record_type, parsed.external_id)
        if key is not None and (record_id := store.key_used(record_type, key)) is not None:
            earlier = store.get(record_type, record_id)
            if earlier is not None and earlier.external_id != parsed.external_id:
                detail = f"Idempotency-Key {key!r} was used for externalId {earlier.external_id!r}"
                return netsuite_error(400, "USER_ERROR", detail)
            # A repeat: answer as the first call was answered, whatever the body says now.
        elif existing is not None and not upsert:
            detail = f"A record with externalId {parsed.external_id!r} already exists"
            return netsuite_error(409, "DUPLICATE_EXTERNAL_ID", detail)
        else:
            record_id = _store(request, state, record_type, parsed, existing)
            if key is not None:
                store.remember_key(record_type, key, record_id)
    return Response(
        status_code=204, headers={"Location": _record_url(request, record_type, record_id)}
    )


def _store(
    request: Request, state: ErpState, record_type: str, parsed: Parsed, existing: Stored | None
) -> str:
    drift = state.faults.drift(SYSTEM, record_type)
    meta = {
        "idempotency_key": request.headers.get("Idempotency-Key"),
        "correlation_id": request.headers.get("X-Correlation-ID"),
        "traceparent": request.headers.get("traceparent"),
        "drift": sorted(drift),
    }
    store = state.store
    period = parsed.period or iso(utc_now())[:7]
    if existing is not None:
        if "drift_drop" in drift:
            return existing.id
        body = apply_drift(record_type, parsed.body, drift)
        return store.update(
            record_type, existing.id, body=body, period=period, meta=existing.meta
        ).id
    # NetSuite internal ids are one sequence across record types.
    record_id = str(store.next_number("internal_id"))
    if "drift_drop" in drift:
        store.record_dropped(
            record_type, record_id, external_id=parsed.external_id, body=parsed.body
        )
        return record_id
    body = apply_drift(record_type, parsed.body, drift)
    store.insert(
        record_type, record_id, external_id=parsed.external_id, body=body, meta=meta, period=period
    )
    return record_id


records = APIRouter(prefix="/record/v1", tags=["records"])


@records.post("/{record_type}", status_code=204, response_class=Response)
async def create_record(record_type: str, request: Request, state: ErpStateDep) -> Response:
    if (unknown := _unknown_type(record_type)) is not None:
        return unknown
    try:
        parsed = _parse(record_type, await request.body())
    except UserError as exc:
        return netsuite_error(400, "USER_ERROR", str(exc))
    return await _write(request, state, record_type, parsed, upsert=False)


@records.put("/{record_type}/eid:{external_id:path}", status_code=204, response_class=Response)
async def upsert_record(
    record_type: str, external_id: str, request: Request, state: ErpStateDep
) -> Response:
    if (unknown := _unknown_type(record_type)) is not None:
        return unknown
    try:
        parsed = _parse(record_type, await request.body(), external_id=external_id)
    except UserError as exc:
        return netsuite_error(400, "USER_ERROR", str(exc))
    return await _write(request, state, record_type, parsed, upsert=True)


@records.get("/{record_type}", response_model=None)
async def list_records(
    record_type: str,
    request: Request,
    state: ErpStateDep,
    period: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any] | JSONResponse:
    """Records of a type, optionally of one period (YYYY-MM), expanded in full for reconciliation."""
    if (unknown := _unknown_type(record_type)) is not None:
        return unknown
    async with state.lock:
        rows = state.store.select(record_type, period=period, limit=limit, offset=offset)
        total_results = state.store.count(record_type, period=period)
    return {
        "links": [{"rel": "self", "href": str(request.url)}],
        "count": len(rows),
        "hasMore": offset + len(rows) < total_results,
        "offset": offset,
        "totalResults": total_results,
        "items": [record_json(request, row) for row in rows],
    }


# Declared before /{record_id} so that "eid:..." is never read as an internal id.
@records.get("/{record_type}/eid:{external_id:path}", response_model=None)
async def get_record_by_external_id(
    record_type: str, external_id: str, request: Request, state: ErpStateDep
) -> dict[str, Any] | JSONResponse:
    if (unknown := _unknown_type(record_type)) is not None:
        return unknown
    async with state.lock:
        record = state.store.find(record_type, external_id)
    if record is None:
        return _not_found(f"with externalId {external_id!r}")
    return record_json(request, record)


@records.get("/{record_type}/{record_id}", name="get_record", response_model=None)
async def get_record(
    record_type: str, record_id: str, request: Request, state: ErpStateDep
) -> dict[str, Any] | JSONResponse:
    if (unknown := _unknown_type(record_type)) is not None:
        return unknown
    async with state.lock:
        record = state.store.get(record_type, record_id)
    if record is None:
        return _not_found(f"with id {record_id!r}")
    return record_json(request, record)


admin = APIRouter(prefix="/_admin", tags=["admin"])


@admin.get("/ledger")
async def ledger(state: ErpStateDep) -> dict[str, list[dict[str, Any]]]:
    """Every record the ERP holds and how many create calls named it: the exactly-once check."""
    async with state.lock:
        calls = state.store.create_calls()
        rows = state.store.select(limit=1_000_000)
        dropped = state.store.dropped()
    entries = []
    for row in rows:
        money = total(row.type, row.body)
        entries.append(
            {
                "type": row.type,
                "id": row.id,
                "external_id": row.external_id,
                "created_at": iso(row.created_at),
                "create_calls": calls.get((row.type, row.external_id or ""), 0),
                "total": float(money) if money is not None else None,
                "currency": row.body.get("currency", {}).get("refName"),
                "period": row.period,
                "idempotency_key": row.meta.get("idempotency_key"),
                "correlation_id": row.meta.get("correlation_id"),
                "traceparent": row.meta.get("traceparent"),
                "drift": row.meta.get("drift", []),
            }
        )
    for entry in dropped:
        entry["create_calls"] = calls.get((entry["type"], entry["external_id"] or ""), 0)
    return {"records": entries, "dropped": dropped}


def create_erp_app(
    *, data_dir: Path | None = None, faults: FaultController | None = None
) -> FastAPI:
    """The ERP; its state lives in data_dir/erp.sqlite3 when given, in memory otherwise."""
    controller = faults or FaultController()
    app = FastAPI(title="Sandbox ERP (NetSuite REST)")
    app.state.erp = ErpState(
        store=RecordStore(data_dir / "erp.sqlite3" if data_dir else None),
        faults=controller,
        lock=asyncio.Lock(),
    )
    app.include_router(records)
    app.include_router(admin)
    app.include_router(faults_router(controller))
    app.add_middleware(
        FaultMiddleware,
        system=SYSTEM,
        controller=controller,
        error_body=_fault_body,
        operation_of=operation_at(2),
    )
    return app
