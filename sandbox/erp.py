"""A NetSuite-REST-shaped ERP simulator: invoices, idempotent creates and a ground-truth ledger.

An outside world: it imports nothing of Concord's, so it cannot agree with Concord by accident.
"""

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse

INVOICE = "invoice"

# NetSuite answers errors as RFC 9457 problem details with its own `o:` extensions.
_PROBLEM_TYPES = {
    400: ("https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.1", "Bad Request"),
    404: ("https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.5", "Not Found"),
    409: ("https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.10", "Conflict"),
}

# The ERP keeps its own currency precision table, like the real one: it must not trust the caller.
# fmt: off
_ZERO_DECIMAL = frozenset({
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG",
    "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF",
})
# fmt: on
_THREE_DECIMAL = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    amount: Decimal
    description: str | None


@dataclass(frozen=True, slots=True)
class InvoiceCreate:
    external_id: str
    entity_external_id: str
    currency: str
    tran_date: date
    memo: str | None
    lines: tuple[InvoiceLine, ...]


@dataclass(frozen=True, slots=True)
class InvoiceRecord:
    id: str
    body: InvoiceCreate
    created_at: datetime
    # Headers of the creating call, so end-to-end tests can prove what travelled.
    idempotency_key: str | None
    correlation_id: str | None
    traceparent: str | None

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.body.lines), Decimal(0))


@dataclass
class ErpState:
    """Everything the ERP holds; keyed by record type so more record types can join later."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    invoices: dict[str, InvoiceRecord] = field(default_factory=dict)
    by_external_id: dict[tuple[str, str], str] = field(default_factory=dict)
    by_idempotency_key: dict[tuple[str, str], str] = field(default_factory=dict)
    create_calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    # NetSuite internal ids are one sequence across record types.
    last_id: int = 0

    def next_id(self) -> str:
        self.last_id += 1
        return str(self.last_id)


def get_erp_state(request: Request) -> ErpState:
    state: ErpState = request.app.state.erp
    return state


ErpStateDep = Annotated[ErpState, Depends(get_erp_state)]


class UserError(ValueError):
    """The request body is not a valid record; NetSuite's USER_ERROR."""


def netsuite_error(status: int, code: str, detail: str) -> JSONResponse:
    problem_type, title = _PROBLEM_TYPES[status]
    body = {
        "type": problem_type,
        "title": title,
        "status": status,
        "o:errorDetails": [{"detail": detail, "o:errorCode": code}],
    }
    return JSONResponse(body, status_code=status)


def _reject_constant(name: str) -> Any:
    raise UserError(f"{name} is not a valid amount")


def _required_str(obj: dict[str, Any], key: str, *, where: str = "") -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}{key} is required and must be a non-empty string")
    return value


def _ref(body: dict[str, Any], key: str, ref_key: str) -> str:
    ref = body.get(key)
    if not isinstance(ref, dict):
        raise UserError(f"{key} is required and must be an object with {ref_key}")
    return _required_str(ref, ref_key, where=f"{key}.")


def _tran_date(value: Any) -> date:
    if value is None:
        return _utc_now().date()
    if not isinstance(value, str):
        raise UserError("tranDate must be a YYYY-MM-DD string")
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise UserError(f"tranDate {value!r} is not a YYYY-MM-DD date") from exc


def _amount(value: Any, currency: str, index: int) -> Decimal:
    # bool is an int subclass; JSON true must not pass as 1.
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise UserError(f"item.items[{index}].amount must be a number")
    amount = Decimal(value)
    places = 0 if currency in _ZERO_DECIMAL else 3 if currency in _THREE_DECIMAL else 2
    try:
        exact = amount == amount.quantize(Decimal(1).scaleb(-places))
    except InvalidOperation:
        exact = False
    if not exact:
        detail = f"is not an amount with at most {places} decimals in {currency}"
        raise UserError(f"item.items[{index}].amount {value} {detail}")
    return amount


def _lines(item: Any, currency: str) -> tuple[InvoiceLine, ...]:
    items = item.get("items") if isinstance(item, dict) else None
    if not isinstance(items, list) or not items:
        raise UserError("item.items must be a non-empty list of lines")
    lines = []
    for index, line in enumerate(items):
        if not isinstance(line, dict):
            raise UserError(f"item.items[{index}] must be an object")
        description = line.get("description")
        if description is not None and not isinstance(description, str):
            raise UserError(f"item.items[{index}].description must be a string")
        lines.append(InvoiceLine(_amount(line.get("amount"), currency, index), description))
    return tuple(lines)


def parse_invoice_create(raw: bytes) -> InvoiceCreate:
    """Validate an invoice create body; raise UserError with NetSuite-style detail."""
    try:
        # Decimal keeps 10.05 exact; floats would let the ledger drift from what was sent.
        body = json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise UserError("the request body must be a JSON object")
    currency = _ref(body, "currency", "refName")
    if len(currency) != 3 or not currency.isascii() or not currency.isupper():
        raise UserError(f"currency.refName {currency!r} is not an ISO 4217 code")
    memo = body.get("memo")
    if memo is not None and not isinstance(memo, str):
        raise UserError("memo must be a string")
    return InvoiceCreate(
        external_id=_required_str(body, "externalId"),
        entity_external_id=_ref(body, "entity", "externalId"),
        currency=currency,
        tran_date=_tran_date(body.get("tranDate")),
        memo=memo,
        lines=_lines(body.get("item"), currency),
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _invoice_url(request: Request, record_id: str) -> str:
    # url_for keeps the mount prefix (/erp), which request.base_url drops.
    return str(request.url_for("get_invoice", record_id=record_id))


def _invoice_json(request: Request, record: InvoiceRecord) -> dict[str, Any]:
    body = record.body
    return {
        "id": record.id,
        "externalId": body.external_id,
        "entity": {"externalId": body.entity_external_id},
        "currency": {"refName": body.currency},
        "tranDate": body.tran_date.isoformat(),
        "memo": body.memo,
        "total": float(record.total),
        "item": {
            "items": [
                {"line": n, "amount": float(line.amount), "description": line.description}
                for n, line in enumerate(body.lines, start=1)
            ]
        },
        "createdDate": _iso(record.created_at),
        "links": [{"rel": "self", "href": _invoice_url(request, record.id)}],
    }


invoices = APIRouter(prefix="/record/v1/invoice", tags=["invoice"])


@invoices.post("", status_code=204, response_class=Response)
async def create_invoice(request: Request, state: ErpStateDep) -> Response:
    try:
        invoice_in = parse_invoice_create(await request.body())
    except UserError as exc:
        return netsuite_error(400, "USER_ERROR", str(exc))
    key = request.headers.get("Idempotency-Key")
    async with state.lock:
        state.create_calls[(INVOICE, invoice_in.external_id)] += 1
        if key is not None and (INVOICE, key) in state.by_idempotency_key:
            record = state.invoices[state.by_idempotency_key[(INVOICE, key)]]
            if record.body.external_id != invoice_in.external_id:
                detail = (
                    f"Idempotency-Key {key!r} was used for externalId {record.body.external_id!r}"
                )
                return netsuite_error(400, "USER_ERROR", detail)
        elif (INVOICE, invoice_in.external_id) in state.by_external_id:
            detail = f"A record with externalId {invoice_in.external_id!r} already exists"
            return netsuite_error(409, "DUPLICATE_EXTERNAL_ID", detail)
        else:
            record = InvoiceRecord(
                id=state.next_id(),
                body=invoice_in,
                created_at=_utc_now(),
                idempotency_key=key,
                correlation_id=request.headers.get("X-Correlation-ID"),
                traceparent=request.headers.get("traceparent"),
            )
            state.invoices[record.id] = record
            state.by_external_id[(INVOICE, invoice_in.external_id)] = record.id
            if key is not None:
                state.by_idempotency_key[(INVOICE, key)] = record.id
    return Response(status_code=204, headers={"Location": _invoice_url(request, record.id)})


def _not_found(what: str) -> JSONResponse:
    return netsuite_error(404, "NONEXISTENT_ID", f"The record instance {what} does not exist")


# Declared before /{record_id} so that "eid:..." is never read as an internal id.
@invoices.get("/eid:{external_id:path}", response_model=None)
async def get_invoice_by_external_id(
    external_id: str, request: Request, state: ErpStateDep
) -> dict[str, Any] | JSONResponse:
    async with state.lock:
        record_id = state.by_external_id.get((INVOICE, external_id))
        record = state.invoices[record_id] if record_id is not None else None
    if record is None:
        return _not_found(f"with externalId {external_id!r}")
    return _invoice_json(request, record)


@invoices.get("/{record_id}", name="get_invoice", response_model=None)
async def get_invoice(
    record_id: str, request: Request, state: ErpStateDep
) -> dict[str, Any] | JSONResponse:
    async with state.lock:
        record = state.invoices.get(record_id)
    if record is None:
        return _not_found(f"with id {record_id!r}")
    return _invoice_json(request, record)


admin = APIRouter(prefix="/_admin", tags=["admin"])


@admin.get("/ledger")
async def ledger(state: ErpStateDep) -> dict[str, list[dict[str, Any]]]:
    """Every record the ERP holds and how many create calls named it: the exactly-once check."""
    async with state.lock:
        records = [
            {
                "type": INVOICE,
                "id": record.id,
                "external_id": record.body.external_id,
                "created_at": _iso(record.created_at),
                "create_calls": state.create_calls[(INVOICE, record.body.external_id)],
                "total": float(record.total),
                "currency": record.body.currency,
                "idempotency_key": record.idempotency_key,
                "correlation_id": record.correlation_id,
                "traceparent": record.traceparent,
            }
            for record in state.invoices.values()
        ]
    return {"records": records}


def create_erp_app() -> FastAPI:
    """A fresh ERP with empty state; mount it wherever the sandbox wants it."""
    app = FastAPI(title="Sandbox ERP (NetSuite REST)")
    app.state.erp = ErpState()
    app.include_router(invoices)
    app.include_router(admin)
    return app
