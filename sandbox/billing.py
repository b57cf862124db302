"""A Stripe-shaped billing simulator: the REST surface over billing_service, signed webhooks,
list endpoints for reconciliation, and the admin ledger, clock and webhook controls.

Requests are form-encoded with bracketed keys, as Stripe's are (JSON bodies are accepted too).
"""

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import stripe
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from sandbox import billing_objects as obj
from sandbox.billing_objects import InvalidRequest, stripe_error
from sandbox.billing_service import Billing
from sandbox.fault_middleware import FaultMiddleware, faults_router, operation_at
from sandbox.faults import FaultController
from sandbox.store import RecordStore, iso
from sandbox.stripe_form import FormError, decode
from sandbox.webhooks import RetryPolicy, WebhookSender

SYSTEM = "billing"
LEDGER_TYPES = (
    "customer",
    "product",
    "price",
    "subscription",
    "invoice",
    "invoiceitem",
    "charge",
    "credit_note",
    "usage_record",
)
_QUERY_TERM = re.compile(r"""^\s*(metadata\['([^']+)'\]|[a-z_]+)\s*:\s*'([^']*)'\s*$""")


@dataclass
class BillingState:
    billing: Billing
    lock: asyncio.Lock
    sender: WebhookSender | None


async def get_state(request: Request) -> BillingState:
    state: BillingState = request.app.state.billing
    return state


StateDep = Annotated[BillingState, Depends(get_state)]


def _fault_body(status: int, message: str, _reason: str) -> dict[str, Any]:
    kind = "api_error" if status >= 500 else "invalid_request_error"
    body = stripe_error(message, kind=kind)
    if status == 429:
        body["error"]["code"] = "rate_limit"
    return body


def _error(exc: InvalidRequest) -> JSONResponse:
    return JSONResponse(stripe_error(str(exc), param=exc.param), status_code=exc.status)


async def _params(request: Request) -> dict[str, Any]:
    raw = (await request.body()).decode()
    if request.headers.get("content-type", "").startswith("application/json"):
        body = json.loads(raw or "{}")
        if not isinstance(body, dict):
            raise FormError("a JSON body must be an object")
        return body
    query = str(request.url.query)
    return decode("&".join(part for part in (raw, query) if part))


async def _mutate(
    request: Request,
    state: BillingState,
    action: Callable[[Billing, dict[str, Any]], dict[str, Any]],
    *,
    creates: str | None = None,
) -> JSONResponse:
    """Run a write under the lock, replaying the stored answer for a repeated Idempotency-Key."""
    try:
        params = await _params(request)
    except (FormError, ValueError) as exc:
        return JSONResponse(stripe_error(f"Invalid request body: {exc}"), status_code=400)
    key = request.headers.get("Idempotency-Key")
    fingerprint = hashlib.sha256(
        f"{request.method} {request.url.path} {sorted(params.items())!r}".encode()
    ).hexdigest()
    store = state.billing.store
    external_id = (params.get("metadata") or {}).get("external_id") if creates else None
    async with state.lock:
        if creates and isinstance(external_id, str):
            # The ledger's ground truth counts every create call, replays included.
            store.count_create(creates, external_id)
        if key is not None and (seen := store.get("idempotency", key)) is not None:
            if seen.body["fingerprint"] != fingerprint:
                message = f"Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."
                return JSONResponse(
                    stripe_error(message, kind="idempotency_error"), status_code=400
                )
            return JSONResponse(
                seen.body["response"],
                status_code=seen.body["status"],
                headers={"Idempotent-Replayed": "true"},
            )
        state.billing.request = (f"req_{obj.new_id('r')[2:]}", key)
        try:
            body, status = action(state.billing, params), 200
        except InvalidRequest as exc:
            body, status = stripe_error(str(exc), param=exc.param), exc.status
        finally:
            state.billing.request = (None, None)
        if key is not None and status < 500:
            store.insert(
                "idempotency",
                key,
                external_id=None,
                body={"fingerprint": fingerprint, "status": status, "response": body},
                meta={},
            )
    return JSONResponse(body, status_code=status)


def _created_filter(params: dict[str, Any]) -> Callable[[int], bool]:
    created = params.get("created")
    if not isinstance(created, dict):
        return lambda _ts: True
    bounds = {op: int(created[op]) for op in ("gt", "gte", "lt", "lte") if op in created}
    checks = {
        "gt": lambda t, b: t > b,
        "gte": lambda t, b: t >= b,
        "lt": lambda t, b: t < b,
        "lte": lambda t, b: t <= b,
    }
    return lambda ts: all(checks[op](ts, bound) for op, bound in bounds.items())


def _list(
    state: BillingState, kind: str, params: dict[str, Any], url: str, **equal: str | None
) -> dict[str, Any]:
    """Stripe list semantics: newest first, limit 1..100, starting_after cursor, created[...] range."""
    limit = max(1, min(100, obj.integer(params, "limit", default=10, low=1)))
    in_range = _created_filter(params)
    rows = [r.body for r in state.billing.store.select(kind, limit=10_000_000)]
    rows = [
        r
        for r in rows
        if in_range(r["created"]) and all(v is None or r.get(k) == v for k, v in equal.items())
    ]
    if kind == "price" and isinstance(params.get("lookup_keys"), list):
        # Stripe's prices?lookup_keys[]=...: plans found by a key that outlives their price IDs.
        rows = [r for r in rows if r.get("lookup_key") in params["lookup_keys"]]
    rows.reverse()
    if (after := params.get("starting_after")) is not None:
        ids = [r["id"] for r in rows]
        rows = rows[ids.index(after) + 1 :] if after in ids else []
    return {"object": "list", "data": rows[:limit], "has_more": len(rows) > limit, "url": url}


v1 = APIRouter(prefix="/v1", tags=["billing"])


@v1.post("/customers")
async def create_customer(request: Request, state: StateDep) -> JSONResponse:
    return await _mutate(request, state, lambda b, p: b.create("customer", p), creates="customer")


@v1.get("/customers/search")
async def search_customers(request: Request, state: StateDep) -> JSONResponse:
    return await _search(request, state, "customer")


@v1.get("/subscriptions/search")
async def search_subscriptions(request: Request, state: StateDep) -> JSONResponse:
    return await _search(request, state, "subscription")


async def _search(request: Request, state: BillingState, kind: str) -> JSONResponse:
    """Stripe's search language, the subset `field:'v'` and `metadata['k']:'v'` joined by AND."""
    query = request.query_params.get("query", "")
    terms = []
    for part in re.split(r"\s+AND\s+", query):
        match = _QUERY_TERM.match(part)
        if match is None:
            return JSONResponse(
                stripe_error(f"Invalid search query: {query}", param="query"), status_code=400
            )
        terms.append((match.group(2), match.group(1), match.group(3)))
    async with state.lock:
        rows = [r.body for r in state.billing.store.select(kind, limit=10_000_000)]
    found = [
        r for r in rows if all((r["metadata"].get(m) if m else r.get(f)) == v for m, f, v in terms)
    ]
    return JSONResponse(
        {
            "object": "search_result",
            "data": found,
            "has_more": False,
            "next_page": None,
            "url": f"/v1/{kind}s/search",
        }
    )


def _getter(kind: str) -> Callable[[str, StateDep], Any]:
    async def get_object(object_id: str, state: StateDep) -> JSONResponse:
        async with state.lock:
            try:
                return JSONResponse(state.billing.load(kind, object_id))
            except InvalidRequest as exc:
                return _error(exc)

    return get_object


def _lister(kind: str, *filters: str) -> Callable[[Request, StateDep], Any]:
    async def list_objects(request: Request, state: StateDep) -> JSONResponse:
        params = decode(str(request.url.query))
        equal = {f: params.get(f) for f in filters}
        if equal.get("status") == "all":
            # Stripe's subscriptions list takes status=all for every status, canceled too.
            equal["status"] = None
        async with state.lock:
            try:
                return JSONResponse(_list(state, kind, params, f"/v1/{kind}s", **equal))
            except InvalidRequest as exc:
                return _error(exc)

    return list_objects


for _kind, _filters in {
    "customer": ("email",),
    "product": (),
    "price": ("product",),
    "subscription": ("customer", "status"),
    "invoice": ("customer", "status", "subscription"),
    "charge": ("customer",),
    "credit_note": ("customer", "invoice"),
    "event": ("type",),
}.items():
    v1.add_api_route(
        f"/{_kind}s/{{object_id}}", _getter(_kind), methods=["GET"], name=f"get_{_kind}"
    )
    v1.add_api_route(
        f"/{_kind}s", _lister(_kind, *_filters), methods=["GET"], name=f"list_{_kind}s"
    )


@v1.post("/customers/{customer_id}")
async def update_customer(customer_id: str, request: Request, state: StateDep) -> JSONResponse:
    return await _mutate(request, state, lambda b, p: b.update_customer(customer_id, p))


@v1.post("/products")
async def create_product(request: Request, state: StateDep) -> JSONResponse:
    return await _mutate(request, state, lambda b, p: b.create("product", p))


@v1.post("/prices")
async def create_price(request: Request, state: StateDep) -> JSONResponse:
    return await _mutate(request, state, lambda b, p: b.create("price", p))


@v1.post("/subscriptions")
async def create_subscription(request: Request, state: StateDep) -> JSONResponse:
    return await _mutate(
        request, state, lambda b, p: b.create_subscription(p), creates="subscription"
    )


@v1.post("/subscriptions/{sub_id}")
async def update_subscription(sub_id: str, request: Request, state: StateDep) -> JSONResponse:
    return await _mutate(request, state, lambda b, p: b.update_subscription(sub_id, p))


@v1.delete("/subscriptions/{sub_id}")
async def cancel_subscription(sub_id: str, request: Request, state: StateDep) -> JSONResponse:
    return await _mutate(request, state, lambda b, _p: b.cancel_subscription(sub_id))


@v1.post("/subscription_items/{item_id}/usage_records")
async def create_usage_record(item_id: str, request: Request, state: StateDep) -> JSONResponse:
    return await _mutate(request, state, lambda b, p: b.add_usage(item_id, p))


@v1.post("/invoices")
async def create_invoice(request: Request, state: StateDep) -> JSONResponse:
    return await _mutate(request, state, lambda b, p: b.create_draft(p))


@v1.post("/credit_notes")
async def create_credit_note(request: Request, state: StateDep) -> JSONResponse:
    return await _mutate(request, state, lambda b, p: b.issue_credit_note(p))


_INVOICE_ACTIONS: dict[str, Callable[[Billing, dict[str, Any], dict[str, Any]], dict[str, Any]]] = {
    "finalize": lambda b, inv, _p: b.finalize(inv),
    "pay": lambda b, inv, p: b.pay(
        inv, paid_out_of_band=str(p.get("paid_out_of_band")).lower() == "true"
    ),
    "void": lambda b, inv, _p: b.close(inv, "void"),
    "mark_uncollectible": lambda b, inv, _p: b.close(inv, "uncollectible"),
}


@v1.post("/invoices/{invoice_id}/{action}")
async def invoice_action(
    invoice_id: str, action: str, request: Request, state: StateDep
) -> JSONResponse:
    act = _INVOICE_ACTIONS.get(action)
    if act is None:
        return JSONResponse(
            stripe_error(f"Unrecognized request URL (POST: /v1/invoices/{invoice_id}/{action})"),
            status_code=404,
        )
    return await _mutate(request, state, lambda b, p: act(b, b.load("invoice", invoice_id), p))


admin = APIRouter(prefix="/_admin", tags=["admin"])


@admin.get("/ledger")
async def ledger(state: StateDep) -> dict[str, Any]:
    store = state.billing.store
    async with state.lock:
        calls = store.create_calls()
        rows = [r for r in store.select(limit=10_000_000) if r.type in LEDGER_TYPES]
    records = []
    for row in rows:
        body = row.body
        records.append(
            {
                "type": row.type,
                "id": row.id,
                "external_id": row.external_id,
                "created_at": iso(row.created_at),
                "create_calls": calls.get((row.type, row.external_id or ""), 1),
                "created": body.get("created"),
                "status": body.get("status"),
                "total": body.get("total", body.get("amount")),
                "currency": body.get("currency"),
            }
        )
    return {"records": records, "clock": state.billing.now()}


@admin.post("/clock")
async def advance_clock(request: Request, state: StateDep) -> dict[str, Any]:
    """{"advance_s": N}: move billing time forward, renewing and retrying what falls due."""
    body = json.loads(await request.body() or b"{}")
    async with state.lock:
        now = state.billing.advance_clock(int(body.get("advance_s", 0)))
    return {"now": now}


@admin.get("/webhooks")
async def webhooks(state: StateDep, wait_s: float = 0.0) -> dict[str, Any]:
    """Deliveries and their attempts; wait_s waits (bounded) until none is in flight."""
    if state.sender is None:
        return {"url": None, "idle": True, "deliveries": []}
    idle = await state.sender.idle(wait_s) if wait_s > 0 else not state.sender.busy
    deliveries = [d.as_json() for d in state.sender.deliveries.values()]
    return {"url": state.sender.url, "idle": idle, "deliveries": deliveries}


@admin.post("/webhooks/redeliver")
async def redeliver(request: Request, state: StateDep) -> JSONResponse:
    event_id = json.loads(await request.body() or b"{}").get("event_id")
    if state.sender is None or not state.sender.redeliver(str(event_id)):
        return JSONResponse(
            {"error": {"code": "not_found", "message": f"no delivery of {event_id}"}}, 404
        )
    return JSONResponse({"redelivering": event_id})


def stripe_signer(secret: str) -> Callable[[bytes, str], dict[str, str]]:
    def sign(body: bytes, _url: str) -> dict[str, str]:
        header = stripe.WebhookSignature.generate_signature_header(
            body.decode(), secret, timestamp=int(time.time())
        )
        return {"Stripe-Signature": str(header)}

    return sign


def create_billing_app(
    *,
    data_dir: Path | None = None,
    faults: FaultController | None = None,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    retry: RetryPolicy | None = None,
) -> FastAPI:
    controller = faults or FaultController()
    sender = None
    if webhook_url and webhook_secret:
        sender = WebhookSender(webhook_url, stripe_signer(webhook_secret), retry or RetryPolicy())
    store = RecordStore(data_dir / "billing.sqlite3" if data_dir else None)
    billing = Billing(
        store, on_event=(lambda e: sender.enqueue(e["id"], e["type"], e)) if sender else None
    )
    app = FastAPI(title="Sandbox billing (Stripe API)")
    app.state.billing = BillingState(billing=billing, lock=asyncio.Lock(), sender=sender)
    app.include_router(v1)
    app.include_router(admin)
    app.include_router(faults_router(controller))
    app.add_middleware(
        FaultMiddleware,
        system=SYSTEM,
        controller=controller,
        error_body=_fault_body,
        operation_of=operation_at(1),
    )
    return app
