"""Analytics after Segment's HTTP Tracking API: `POST /v1/track`, deduplicated by messageId.

https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/

* Auth is HTTP Basic with the source's write key as the user name and an empty password
  (the password is ignored, as Segment ignores it); without it the answer is 401.
* The body is one JSON object, at most 32 KB: `userId` or `anonymousId`, `event`, and optional
  `properties`, `timestamp` (ISO 8601), `messageId` (at most 100 characters) and `context`.
  Segment answers `{"success": true}` with 200 and only refuses malformed JSON and oversized
  bodies; it accepts an event without a user or a name and silently drops it later. The
  sandbox refuses those with 400 instead, so a connector that sends them fails where it can
  be seen.
* Segment deduplicates by messageId: a repeat is answered 200 like the first call and not
  stored again. Without a messageId the sandbox makes one up, as Segment's libraries do.

Sandbox-only extensions (Segment has no read API): `GET /_admin/events` lists what was kept,
filtered by `messageId`, `userId` or `event`, and `GET /_admin/ledger` is the ground-truth
ledger every sandbox system serves. Both sit under `/_admin`, which faults never touch.
"""

import asyncio
import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse

from sandbox.fault_middleware import FaultMiddleware, faults_router, operation_at
from sandbox.faults import FaultController
from sandbox.store import RecordStore, Stored, iso, utc_now

# The write key the sandbox accepts unless told otherwise; the worker's default matches it.
DEFAULT_WRITE_KEY = "concord-sandbox-write-key"
MAX_BODY_BYTES = 32 * 1024
MAX_MESSAGE_ID = 100
TRACK = "track"


@dataclass
class AnalyticsState:
    store: RecordStore
    lock: asyncio.Lock
    write_key: str


async def get_state(request: Request) -> AnalyticsState:
    state: AnalyticsState = request.app.state.analytics
    return state


StateDep = Annotated[AnalyticsState, Depends(get_state)]


def _error(status: int, code: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Basic realm="Segment"'} if status == 401 else None
    return JSONResponse(
        {"success": False, "error": code, "message": message}, status_code=status, headers=headers
    )


def _fault_body(_status: int, message: str, reason: str) -> dict[str, Any]:
    return {"success": False, "error": reason, "message": message}


def _authorized(request: Request, write_key: str) -> bool:
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic" or not write_key:
        return False
    try:
        user, _, _password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return user == write_key


def _validated(raw: bytes) -> dict[str, Any]:
    """The track call as Segment would keep it; ValueError names what is wrong."""
    if len(raw) > MAX_BODY_BYTES:
        raise ValueError(f"the body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES}")
    try:
        body = json.loads(raw or b"null")
    except ValueError as exc:
        raise ValueError(f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    if not any(isinstance(body.get(k), str) and body[k] for k in ("userId", "anonymousId")):
        raise ValueError("userId or anonymousId is required")
    if not isinstance(body.get("event"), str) or not body["event"]:
        raise ValueError("event is required")
    for key in ("properties", "context"):
        if key in body and not isinstance(body[key], dict):
            raise ValueError(f"{key} must be an object")
    message_id = body.get("messageId")
    if message_id is not None and (
        not isinstance(message_id, str) or not 0 < len(message_id) <= MAX_MESSAGE_ID
    ):
        raise ValueError(f"messageId must be a string of 1 to {MAX_MESSAGE_ID} characters")
    timestamp = body.get("timestamp")
    if timestamp is not None:
        try:
            datetime.fromisoformat(str(timestamp).replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"timestamp is not ISO 8601: {timestamp!r}") from exc
    return body


track = APIRouter(prefix="/v1", tags=["analytics"])


@track.post("/track")
async def track_event(request: Request, state: StateDep) -> JSONResponse:
    """Record one track call; a messageId already kept is answered the same and not stored."""
    if not _authorized(request, state.write_key):
        return _error(401, "unauthorized", "a valid write key is required (HTTP Basic user name)")
    try:
        body = _validated(await request.body())
    except ValueError as exc:
        return _error(400, "invalid_request", str(exc))
    received = iso(utc_now())
    message_id = body.get("messageId") or f"api-{uuid.uuid4()}"
    # A key sent in the body (which Segment also accepts) is not kept for anyone to read.
    body.pop("writeKey", None)
    event = {
        **body,
        "type": "track",
        "messageId": message_id,
        "timestamp": body.get("timestamp") or received,
        "receivedAt": received,
    }
    store = state.store
    async with state.lock:
        store.count_create(TRACK, message_id)
        if store.find(TRACK, message_id) is None:
            meta = {"correlation_id": request.headers.get("X-Correlation-ID")}
            store.insert(TRACK, message_id, external_id=message_id, body=event, meta=meta)
    return JSONResponse({"success": True})


admin = APIRouter(prefix="/_admin", tags=["admin"])


def _event_json(row: Stored) -> dict[str, Any]:
    return {**row.body, "correlation_id": row.meta.get("correlation_id")}


@admin.get("/events")
async def list_events(
    state: StateDep,
    message_id: Annotated[str | None, Query(alias="messageId")] = None,
    user_id: Annotated[str | None, Query(alias="userId")] = None,
    event: str | None = None,
) -> dict[str, Any]:
    """Sandbox-only: the track calls kept (one per messageId), oldest first, optionally filtered."""
    async with state.lock:
        rows = state.store.select(TRACK, limit=10_000_000)
    found = [
        _event_json(r)
        for r in rows
        if (message_id is None or r.id == message_id)
        and (user_id is None or r.body.get("userId") == user_id)
        and (event is None or r.body.get("event") == event)
    ]
    return {"events": found, "count": len(found)}


@admin.get("/ledger")
async def ledger(state: StateDep) -> dict[str, Any]:
    async with state.lock:
        calls = state.store.create_calls()
        rows = state.store.select(TRACK, limit=10_000_000)
    return {
        "records": [
            {
                "type": r.type,
                "id": r.id,
                "external_id": r.external_id,
                "created_at": iso(r.created_at),
                "create_calls": calls.get((r.type, r.external_id or ""), 0),
                "user_id": r.body.get("userId"),
                "event": r.body.get("event"),
                "correlation_id": r.meta.get("correlation_id"),
            }
            for r in rows
        ]
    }


def create_analytics_app(
    *,
    data_dir: Path | None = None,
    faults: FaultController | None = None,
    write_key: str = DEFAULT_WRITE_KEY,
) -> FastAPI:
    """Operations are named `track`, e.g. `analytics.track:500=0.1` or `analytics:429=1`."""
    controller = faults or FaultController()
    app = FastAPI(title="Sandbox analytics (Segment)")
    app.state.analytics = AnalyticsState(
        RecordStore(data_dir / "analytics.sqlite3" if data_dir else None),
        asyncio.Lock(),
        write_key,
    )
    app.include_router(track)
    app.include_router(admin)
    app.include_router(faults_router(controller))
    app.add_middleware(
        FaultMiddleware,
        system="analytics",
        controller=controller,
        error_body=_fault_body,
        operation_of=operation_at(1),
    )
    return app
