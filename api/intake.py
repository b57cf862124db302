"""The inbox edge shared by every intake route: bounded reads, then commit, then wake-up."""

import json
import math
import os
from typing import Any

from arq.connections import ArqRedis
from fastapi import BackgroundTasks, Request
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.errors import ApiError
from api.schemas import IntakeResponse
from lineage import inbox
from lineage.enums import EventStatus, System
from lineage.inbox import IncomingEvent
from orchestrator.client.canonical import Ignored, Routed
from orchestrator.client.queue import try_enqueue_wakeup
from orchestrator.client.tracing import current_traceparent

_JSON_TYPES = ("application/json", "application/cloudevents+json")

DUPLICATE = "A redelivery of a stored event, recorded as a duplicate; nothing runs twice."
INTAKE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Signature or body refused (see error.code). Nothing is stored."},
    401: {"description": "No valid credentials. Nothing is stored."},
    409: {"description": "The event ID was already received with a different body."},
    413: {"description": "The body is larger than the limit. Nothing is stored."},
    415: {"description": "The body is not JSON. Nothing is stored."},
    # Within CONCORD_DATABASE_POOL_TIMEOUT_S, not a 500 after 30 s: a sender retries on 503.
    503: {
        "description": "The database is busy or unreachable (error.code `database_busy` or "
        "`database_unavailable`); retry after Retry-After seconds. An event stored after all "
        "is answered 200 as a duplicate on redelivery.",
    },
}


async def read_body(
    request: Request, *, max_bytes: int, content_types: tuple[str, ...] = _JSON_TYPES
) -> bytes:
    """Return the raw body; refuse a wrong type, or an oversize body without reading it whole."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in content_types:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the body as {' or '.join(content_types)}, not {media_type or 'nothing'}",
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _fault_after_commit(source_event_id: str) -> None:
    """Test-only fault injection (tests/chaos/test_api_crash.py): with
    CONCORD_FAULT_AFTER_COMMIT=crash:PREFIX the process dies right after committing an event
    whose ID starts with PREFIX, before the wake-up is queued or the answer sent."""
    mode, _, prefix = os.environ.get("CONCORD_FAULT_AFTER_COMMIT", "").partition(":")
    if mode == "crash" and prefix and source_event_id.startswith(prefix):
        os._exit(70)


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the body is larger than {max_bytes} bytes")


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        # PostgreSQL's JSON types refuse it; so does RFC 8259.
        raise ValueError(f"{text[:20]} is beyond a double's range")
    return value


def _storable_text(document: Any) -> None:
    """Refuse strings no database stores: NUL (PostgreSQL) and lone surrogates (not UTF-8)."""
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                raise ValueError("a string holds a NUL character")
            if not value.isascii():
                try:
                    value.encode()
                except UnicodeEncodeError:
                    raise ValueError("a string holds a lone UTF-16 surrogate") from None
        elif isinstance(value, dict):
            stack.extend(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


def parse_json(raw: bytes) -> Any:
    try:
        document = json.loads(raw, parse_constant=_not_json, parse_float=_finite)
        _storable_text(document)
        return document
    except RecursionError as exc:
        raise ApiError(400, "invalid_json", "the body nests arrays or objects too deeply") from exc
    except ValueError as exc:
        # Also a number beyond Python's 4300-digit limit, besides bad syntax and bad UTF-8.
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from exc


def incoming_event(
    *,
    source: str,
    source_event_id: str,
    event_type: str,
    payload: dict[str, Any],
    decision: Routed | Ignored,
    source_system: System,
) -> IncomingEvent:
    keys = decision.keys
    routed = decision if isinstance(decision, Routed) else None
    return IncomingEvent(
        source=source,
        source_event_id=source_event_id,
        event_type=event_type,
        source_system=source_system,
        payload=payload,
        workflow=routed.workflow.value if routed else None,
        ignored_reason=decision.reason if isinstance(decision, Ignored) else None,
        canonical=routed.canonical.model_dump(mode="json") if routed else None,
        customer_id=keys.customer_id,
        subscription_id=keys.subscription_id,
        invoice_id=keys.invoice_id,
        amount_minor=keys.amount_minor,
        currency=keys.currency,
        period=keys.period,
        ordering_key=keys.ordering_key if routed else None,
        occurred_at=keys.occurred_at,
    )


async def commit_event(
    sessionmaker: async_sessionmaker[AsyncSession],
    arq: ArqRedis,
    background: BackgroundTasks,
    incoming: IncomingEvent,
) -> IntakeResponse:
    """Commit the event and its transaction, then schedule the wake-up to run after the answer."""
    # A first delivery does not look for a stored row (one round trip fewer on the common
    # path); a redelivery, or the loser of concurrent first deliveries, rolls back and looks.
    look_first = False
    for attempt in range(3):
        try:
            if look_first:
                async with sessionmaker.begin() as session:
                    result = await inbox.record_event(session, incoming)
            else:
                result = await inbox.record_first_delivery(sessionmaker, incoming)
            break
        except (inbox.AlreadyStored, IntegrityError):
            look_first = True
            if attempt == 2:
                raise
    if result.conflict:
        raise ApiError(
            409,
            "event_id_conflict",
            f"event {incoming.source_event_id} was already received with a different body",
            details={"correlation_id": result.correlation_id},
        )
    if not result.duplicate and result.status is EventStatus.ACCEPTED:
        _fault_after_commit(incoming.source_event_id)
        background.add_task(try_enqueue_wakeup, arq, result.correlation_id, current_traceparent())
    return IntakeResponse(
        correlation_id=result.correlation_id,
        status=result.status,
        duplicate=result.duplicate,
    )
