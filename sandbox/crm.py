"""A HubSpot-CRM-v3-shaped simulator: companies, deals, line items and tasks; upsert and lookup
by a unique `external_id` property; search by property; associations given on create (deal to
company and line item, parent and child companies) and read back with `?associations=`; deal
webhooks signed with HubSpot's v3 scheme.

Objects answer as HubSpot's do: {"id", "properties": {...}, "createdAt", "updatedAt",
"archived"}, with every property value a string. Errors are {"status": "error", "message",
"correlationId", "category"}. A deal whose dealstage becomes `closedwon`, or whose
`renewal_risk` property is set, is sent as a `deal.propertyChange` webhook event.
"""

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse

from sandbox.fault_middleware import FaultMiddleware, faults_router, operation_at
from sandbox.faults import FaultController
from sandbox.hubspot_signature import signed_headers
from sandbox.store import RecordStore, Stored, iso
from sandbox.webhooks import RetryPolicy, WebhookSender

SYSTEM = "crm"
OBJECT_TYPES = frozenset({"companies", "deals", "line_items", "tasks"})
# HubSpot-defined association type IDs: (from type, to type, label, the inverse type ID).
ASSOCIATIONS = {
    5: ("deals", "companies", "deal_to_company", 6),
    6: ("companies", "deals", "company_to_deal", 5),
    13: ("companies", "companies", "parent_to_child_company", 14),
    14: ("companies", "companies", "child_to_parent_company", 13),
    19: ("deals", "line_items", "deal_to_line_item", 20),
    20: ("line_items", "deals", "line_item_to_deal", 19),
    341: ("deals", "companies", "deal_to_company", 342),
    342: ("companies", "deals", "company_to_deal", 341),
}
UNIQUE_PROPERTY = "external_id"
# Deal properties whose changes are pushed as webhooks, and the values that trigger them.
WATCHED = {"dealstage": frozenset({"closedwon"}), "renewal_risk": None}
PORTAL_ID, APP_ID, SUBSCRIPTION_ID = 62515, 54321, 12345
_CATEGORIES = {
    400: "VALIDATION_ERROR",
    404: "OBJECT_NOT_FOUND",
    409: "CONFLICT",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMITS",
}


@dataclass
class CrmState:
    store: RecordStore
    lock: asyncio.Lock
    sender: WebhookSender | None


async def get_state(request: Request) -> CrmState:
    state: CrmState = request.app.state.crm
    return state


StateDep = Annotated[CrmState, Depends(get_state)]
IdProperty = Annotated[str | None, Query(alias="idProperty")]


def hubspot_error(status: int, message: str) -> dict[str, Any]:
    return {
        "status": "error",
        "message": message,
        "correlationId": str(uuid.uuid4()),
        "category": _CATEGORIES.get(status, "INTERNAL_ERROR"),
    }


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(hubspot_error(status, message), status_code=status)


def _fault_body(status: int, message: str, _reason: str) -> dict[str, Any]:
    body = hubspot_error(status, message)
    if status == 429:
        body["policyName"] = "TEN_SECONDLY_ROLLING"
    return body


class Invalid(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _object_json(row: Stored, associations: tuple[str, ...] = ()) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for to_type in associations:
        results = [
            {"id": a["id"], "type": ASSOCIATIONS[a["typeId"]][2]}
            for a in row.meta.get("associations", [])
            if ASSOCIATIONS[a["typeId"]][1] == to_type
        ]
        # HubSpot leaves out the types an object has no associations of.
        if results:
            found[to_type] = {"results": results}
    body: dict[str, Any] = {
        "id": row.id,
        "properties": {
            **row.body,
            "hs_object_id": row.id,
            "createdate": iso(row.created_at),
            "hs_lastmodifieddate": iso(row.updated_at),
        },
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
        "archived": False,
    }
    if found:
        body["associations"] = found
    return body


def _associations(store: RecordStore, object_type: str, body: Any) -> list[dict[str, Any]]:
    """HubSpot's create-time `associations`: [{"to": {"id"}, "types": [{"associationTypeId"}]}]."""
    raw = body.get("associations") if isinstance(body, dict) else None
    links: list[dict[str, Any]] = []
    for n, entry in enumerate(raw or []):
        try:
            to_id = str(entry["to"]["id"])
            type_ids = [int(t["associationTypeId"]) for t in entry["types"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise Invalid(400, f"associations[{n}] is not {{to: {{id}}, types: [...]}}") from exc
        for type_id in type_ids:
            spec = ASSOCIATIONS.get(type_id)
            if spec is None or spec[0] != object_type:
                raise Invalid(400, f"association type {type_id} does not start at {object_type}")
            if store.get(spec[1], to_id) is None:
                raise Invalid(404, f"associations[{n}]: {spec[1]} {to_id} does not exist")
            links.append({"id": to_id, "typeId": type_id})
    return links


def _link_back(store: RecordStore, row: Stored, links: list[dict[str, Any]]) -> None:
    for link in links:
        to_type, inverse = ASSOCIATIONS[link["typeId"]][1], ASSOCIATIONS[link["typeId"]][3]
        other = store.get(to_type, link["id"])
        assert other is not None
        back = [*other.meta.get("associations", []), {"id": row.id, "typeId": inverse}]
        store.update(to_type, other.id, body=other.body, meta={**other.meta, "associations": back})


def _properties(body: Any) -> dict[str, str]:
    props = body.get("properties") if isinstance(body, dict) else None
    if not isinstance(props, dict):
        raise Invalid(400, "Invalid input JSON: properties must be an object")
    # HubSpot stores every property value as a string (null clears it).
    return {str(k): "" if v is None else str(v) for k, v in props.items()}


async def _body(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise Invalid(400, f"Invalid input JSON: {exc}") from exc


def _emit_changes(state: CrmState, object_type: str, row: Stored, before: dict[str, str]) -> None:
    if object_type != "deals" or state.sender is None:
        return
    for name, triggers in WATCHED.items():
        value = row.body.get(name)
        if value and value != before.get(name) and (triggers is None or value in triggers):
            event_id = state.store.next_number("event_id")
            event = {
                "eventId": event_id,
                "subscriptionId": SUBSCRIPTION_ID,
                "portalId": PORTAL_ID,
                "appId": APP_ID,
                "occurredAt": int(row.updated_at.timestamp() * 1000),
                "subscriptionType": "deal.propertyChange",
                "attemptNumber": 0,
                "objectId": int(row.id),
                "propertyName": name,
                "propertyValue": value,
                "changeSource": "CRM",
                "sourceId": row.body.get(UNIQUE_PROPERTY),
            }
            # HubSpot posts arrays of events; the sandbox sends batches of one.
            state.sender.enqueue(str(event_id), f"deal.propertyChange:{name}", [event])


def _write(
    state: CrmState,
    object_type: str,
    props: dict[str, str],
    existing: Stored | None,
    links: list[dict[str, Any]] | None = None,
) -> Stored:
    store = state.store
    if existing is None:
        record_id = str(store.next_number("object_id", start=1001))
        row = store.insert(
            object_type,
            record_id,
            external_id=props.get(UNIQUE_PROPERTY) or None,
            body=props,
            meta={"associations": links} if links else {},
        )
        # Associated before the webhook goes out, as HubSpot's create-with-associations is.
        _link_back(store, row, links or [])
        _emit_changes(state, object_type, row, {})
        return row
    merged = {**existing.body, **props}
    row = store.update(object_type, existing.id, body=merged)
    _emit_changes(state, object_type, row, existing.body)
    return row


def _find(
    store: RecordStore, object_type: str, object_id: str, id_property: str | None
) -> Stored | None:
    if id_property in (None, "hs_object_id"):
        return store.get(object_type, object_id)
    if id_property != UNIQUE_PROPERTY:
        raise Invalid(400, f"Property {id_property} is not a unique identifier property")
    return store.find(object_type, object_id)


objects = APIRouter(prefix="/crm/v3/objects", tags=["crm"])


def _check_type(object_type: str) -> None:
    if object_type not in OBJECT_TYPES:
        raise Invalid(404, f"Unable to infer object type from: {object_type}")


@objects.post("/{object_type}", response_model=None)
async def create_object(object_type: str, request: Request, state: StateDep) -> JSONResponse:
    try:
        _check_type(object_type)
        body = await _body(request)
        props = _properties(body)
        async with state.lock:
            links = _associations(state.store, object_type, body)
            eid = props.get(UNIQUE_PROPERTY)
            if eid:
                state.store.count_create(object_type, eid)
                if state.store.find(object_type, eid) is not None:
                    raise Invalid(
                        409, f"A {object_type} with {UNIQUE_PROPERTY}={eid} already exists"
                    )
            row = _write(state, object_type, props, None, links)
    except Invalid as exc:
        return _error(exc.status, str(exc))
    return JSONResponse(_object_json(row), status_code=201)


@objects.post("/{object_type}/batch/upsert", response_model=None)
async def batch_upsert(object_type: str, request: Request, state: StateDep) -> JSONResponse:
    """HubSpot's upsert by a unique property: each input names idProperty and its value as id."""
    try:
        _check_type(object_type)
        inputs = (await _body(request)).get("inputs")
        if not isinstance(inputs, list) or not inputs:
            raise Invalid(400, "inputs must be a non-empty list")
        results = []
        async with state.lock:
            for entry in inputs:
                if (
                    not isinstance(entry, dict)
                    or entry.get("idProperty") != UNIQUE_PROPERTY
                    or not entry.get("id")
                ):
                    raise Invalid(400, f"each input needs idProperty={UNIQUE_PROPERTY} and an id")
                eid = str(entry["id"])
                props = {**_properties(entry), UNIQUE_PROPERTY: eid}
                state.store.count_create(object_type, eid)
                existing = state.store.find(object_type, eid)
                row = _write(state, object_type, props, existing)
                results.append({**_object_json(row), "new": existing is None})
    except Invalid as exc:
        return _error(exc.status, str(exc))
    return JSONResponse(
        {
            "status": "COMPLETE",
            "results": results,
            "startedAt": results[0]["updatedAt"],
            "completedAt": results[-1]["updatedAt"],
        }
    )


@objects.post("/{object_type}/search", response_model=None)
async def search(object_type: str, request: Request, state: StateDep) -> JSONResponse:
    """filterGroups are ORed, their filters ANDed; EQ, NEQ, HAS_PROPERTY, LT and GT on strings."""
    try:
        _check_type(object_type)
        body = await _body(request)
        groups = body.get("filterGroups") or [{"filters": []}]
        limit, after = int(body.get("limit", 10)), int(body.get("after") or 0)
        async with state.lock:
            rows = state.store.select(object_type, limit=10_000_000)
        found = [r for r in rows if any(_matches(r.body, g.get("filters", [])) for g in groups)]
    except (Invalid, TypeError, ValueError, AttributeError) as exc:
        return _error(getattr(exc, "status", 400), f"Invalid search: {exc}")
    page = found[after : after + limit]
    paging = {"next": {"after": str(after + limit)}} if after + limit < len(found) else None
    result: dict[str, Any] = {"total": len(found), "results": [_object_json(r) for r in page]}
    if paging:
        result["paging"] = paging
    return JSONResponse(result)


def _matches(props: dict[str, str], filters: list[dict[str, Any]]) -> bool:
    for f in filters:
        name, op, value = f["propertyName"], f.get("operator", "EQ"), f.get("value")
        have = props.get(name)
        ok = {
            "EQ": have == str(value),
            "NEQ": have != str(value),
            "HAS_PROPERTY": bool(have),
            "NOT_HAS_PROPERTY": not have,
            "LT": have is not None and have < str(value),
            "GT": have is not None and have > str(value),
        }.get(op)
        if ok is None:
            raise Invalid(400, f"operator {op} is not supported by the sandbox")
        if not ok:
            return False
    return True


@objects.get("/{object_type}/{object_id}", response_model=None)
async def get_object(
    object_type: str,
    object_id: str,
    state: StateDep,
    id_property: IdProperty = None,
    associations: str = "",
) -> JSONResponse:
    try:
        _check_type(object_type)
        async with state.lock:
            row = _find(state.store, object_type, object_id, id_property)
    except Invalid as exc:
        return _error(exc.status, str(exc))
    if row is None:
        return _error(404, f"resource not found: {object_type} {object_id}")
    wanted = tuple(t.strip() for t in associations.split(",") if t.strip())
    return JSONResponse(_object_json(row, wanted))


@objects.patch("/{object_type}/{object_id}", response_model=None)
async def update_object(
    object_type: str,
    object_id: str,
    request: Request,
    state: StateDep,
    id_property: IdProperty = None,
) -> JSONResponse:
    try:
        _check_type(object_type)
        props = _properties(await _body(request))
        async with state.lock:
            row = _find(state.store, object_type, object_id, id_property)
            if row is None:
                raise Invalid(404, f"resource not found: {object_type} {object_id}")
            row = _write(state, object_type, props, row)
    except Invalid as exc:
        return _error(exc.status, str(exc))
    return JSONResponse(_object_json(row))


admin = APIRouter(prefix="/_admin", tags=["admin"])


@admin.get("/ledger")
async def ledger(state: StateDep) -> dict[str, Any]:
    async with state.lock:
        calls = state.store.create_calls()
        rows = [r for r in state.store.select(limit=10_000_000) if r.type in OBJECT_TYPES]
    return {
        "records": [
            {
                "type": r.type,
                "id": r.id,
                "external_id": r.external_id,
                "created_at": iso(r.created_at),
                "create_calls": calls.get((r.type, r.external_id or ""), 1),
                "amount": r.body.get("amount"),
                "dealstage": r.body.get("dealstage"),
            }
            for r in rows
        ]
    }


@admin.get("/webhooks")
async def webhooks(state: StateDep, wait_s: float = 0.0) -> dict[str, Any]:
    if state.sender is None:
        return {"url": None, "idle": True, "deliveries": []}
    idle = await state.sender.idle(wait_s) if wait_s > 0 else not state.sender.busy
    return {
        "url": state.sender.url,
        "idle": idle,
        "deliveries": [d.as_json() for d in state.sender.deliveries.values()],
    }


def hubspot_signer(secret: str) -> Callable[[bytes, str], dict[str, str]]:
    def sign(body: bytes, url: str) -> dict[str, str]:
        return signed_headers(secret, uri=url, body=body)

    return sign


def create_crm_app(
    *,
    data_dir: Path | None = None,
    faults: FaultController | None = None,
    webhook_url: str | None = None,
    client_secret: str | None = None,
    retry: RetryPolicy | None = None,
) -> FastAPI:
    controller = faults or FaultController()
    sender = None
    if webhook_url and client_secret:
        sender = WebhookSender(webhook_url, hubspot_signer(client_secret), retry or RetryPolicy())
    app = FastAPI(title="Sandbox CRM (HubSpot CRM v3)")
    app.state.crm = CrmState(
        RecordStore(data_dir / "crm.sqlite3" if data_dir else None), asyncio.Lock(), sender
    )
    app.include_router(objects)
    app.include_router(admin)
    app.include_router(faults_router(controller))
    app.add_middleware(
        FaultMiddleware,
        system=SYSTEM,
        controller=controller,
        error_body=_fault_body,
        operation_of=operation_at(3),
    )
    return app
