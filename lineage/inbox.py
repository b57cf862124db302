"""The inbox: an event and the transaction it starts are stored together, or not at all."""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lineage.clock import new_correlation_id, utc_now
from lineage.enums import EventStatus, System, TxState
from lineage.models import BusinessTransaction, ExternalRef, InboxEvent


def payload_digest(payload: Any) -> str:
    """Digest of the JSON content, so a redelivery with other whitespace is still the same body."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    source: str
    source_event_id: str
    event_type: str
    source_system: System
    payload: dict[str, Any]
    # Set for an event that starts a workflow; None with ignored_reason for one that does not.
    workflow: str | None
    ignored_reason: str | None = None
    canonical: dict[str, Any] | None = None
    customer_id: str | None = None
    subscription_id: str | None = None
    invoice_id: str | None = None
    amount_minor: int | None = None
    currency: str | None = None
    period: str | None = None
    ordering_key: str | None = None
    occurred_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class InboxResult:
    correlation_id: str
    status: EventStatus
    duplicate: bool
    # The same event ID arrived with another body: refused, the stored one stands.
    conflict: bool = False


async def record_event(session: AsyncSession, incoming: IncomingEvent) -> InboxResult:
    """Store a new event with its transaction, or count a redelivery of a stored one.

    Two concurrent first deliveries race on the (source, source_event_id) unique key; the
    loser's flush raises IntegrityError and the caller retries, finding the winner's row.
    """
    existing = await session.scalar(
        select(InboxEvent).where(
            InboxEvent.source == incoming.source,
            InboxEvent.source_event_id == incoming.source_event_id,
        )
    )
    digest = payload_digest(incoming.payload)
    if existing is not None:
        if existing.payload_sha256 != digest:
            return InboxResult(existing.correlation_id, existing.status, True, conflict=True)
        await session.execute(
            update(InboxEvent)
            .where(InboxEvent.id == existing.id)
            .values(deliveries=InboxEvent.deliveries + 1, last_delivery_at=utc_now())
        )
        return InboxResult(existing.correlation_id, existing.status, duplicate=True)

    now = utc_now()
    correlation_id = new_correlation_id()
    ignored = incoming.workflow is None
    session.add(
        BusinessTransaction(
            correlation_id=correlation_id,
            workflow=incoming.workflow,
            state=TxState.IGNORED if ignored else TxState.RECEIVED,
            state_reason=incoming.ignored_reason,
            source_system=incoming.source_system,
            event_type=incoming.event_type,
            canonical=incoming.canonical,
            customer_id=incoming.customer_id,
            subscription_id=incoming.subscription_id,
            invoice_id=incoming.invoice_id,
            amount_minor=incoming.amount_minor,
            currency=incoming.currency,
            period=incoming.period,
            ordering_key=incoming.ordering_key,
            occurred_at=incoming.occurred_at,
            received_at=now,
            updated_at=now,
            completed_at=now if ignored else None,
        )
    )
    # The transaction must exist before the event's foreign key points at it.
    await session.flush()
    for object_type, external_id in (
        ("invoice", incoming.invoice_id),
        ("customer", incoming.customer_id),
        ("subscription", incoming.subscription_id),
    ):
        if external_id:
            session.add(
                ExternalRef(
                    correlation_id=correlation_id,
                    system=incoming.source_system,
                    object_type=object_type,
                    external_id=external_id,
                    created_at=now,
                )
            )
    status = EventStatus.IGNORED if ignored else EventStatus.ACCEPTED
    session.add(
        InboxEvent(
            source=incoming.source,
            source_event_id=incoming.source_event_id,
            event_type=incoming.event_type,
            status=status,
            ignored_reason=incoming.ignored_reason,
            correlation_id=correlation_id,
            payload=incoming.payload,
            payload_sha256=digest,
            received_at=now,
            last_delivery_at=now,
        )
    )
    await session.flush()
    return InboxResult(correlation_id, status, duplicate=False)
