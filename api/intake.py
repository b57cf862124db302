"""The inbox edge shared by every intake route: bounded reads, then commit, then wake-up."""

import json
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

_JSON_TYPES = ("application/json", "application/cloudevents+json")

DUPLICATE = "A redelivery of a stored event, recorded as a duplicate; nothing runs twice."
INTAKE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Signature or body refused (see error.code). Nothing is stored."},
    401: {"description": "No valid credentials. Nothing is stored."},
    409: {"description": "The event ID was already received with a different body."},
    413: {"description": "The body is larger than the limit. Nothing is stored."},
    415: {"description": "The body is not JSON. Nothing is stored."},
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


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the body is larger than {max_bytes} bytes")


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
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
    for attempt in range(3):
        try:
            async with sessionmaker.begin() as session:
                result = await inbox.record_event(session, incoming)
            break
        except IntegrityError:
            # A concurrent delivery of the same event won the unique key: read its row instead.
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
        background.add_task(try_enqueue_wakeup, arq, result.correlation_id)
    return IntakeResponse(
        correlation_id=result.correlation_id,
        status=result.status,
        duplicate=result.duplicate,
    )
