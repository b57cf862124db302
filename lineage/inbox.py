"""The inbox: an event and the transaction it starts are stored together, or not at all."""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.clock import new_correlation_id, utc_now
from lineage.enums import EventStatus, System, TxState
from lineage.hot_path import FIRST_DELIVERY, REF_KEYS, autocommit_on_postgres
from lineage.models import BusinessTransaction, ExternalRef, InboxEvent, table_of
from lineage.upsert import insert_if_absent

_TRANSACTIONS = table_of(BusinessTransaction)
_REFS = table_of(ExternalRef)
_EVENTS = table_of(InboxEvent)
# Built once: a statement made per request is built and hashed per request (its cache key).
_INSERT_TRANSACTION = insert(_TRANSACTIONS)
_INSERT_REFS = insert(_REFS)


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


class AlreadyStored(Exception):
    """The event's (source, source_event_id) is taken: roll back, then record_event with
    look_first, which finds the stored row. Nothing of this delivery may be committed."""


async def record_event(
    session: AsyncSession, incoming: IncomingEvent, *, look_first: bool = True
) -> InboxResult:
    """Store a new event with its transaction, or count a redelivery of a stored one.

    With look_first=False the stored row is not looked for: a first delivery, by far the most
    common, saves that round trip, and a redelivery raises AlreadyStored instead. Two concurrent
    first deliveries race on the unique key the same way: the loser raises AlreadyStored.
    """
    digest = payload_digest(incoming.payload)
    if look_first:
        redelivery = await _count_redelivery(session, incoming, digest)
        if redelivery is not None:
            return redelivery
    return await _store_new(session, incoming, digest)


async def _count_redelivery(
    session: AsyncSession, incoming: IncomingEvent, digest: str
) -> InboxResult | None:
    existing = await session.scalar(
        select(InboxEvent).where(
            InboxEvent.source == incoming.source,
            InboxEvent.source_event_id == incoming.source_event_id,
        )
    )
    if existing is None:
        return None
    if existing.payload_sha256 != digest:
        return InboxResult(existing.correlation_id, existing.status, True, conflict=True)
    await session.execute(
        update(InboxEvent)
        .where(InboxEvent.id == existing.id)
        .values(deliveries=InboxEvent.deliveries + 1, last_delivery_at=utc_now())
    )
    return InboxResult(existing.correlation_id, existing.status, duplicate=True)


def _new_rows(
    incoming: IncomingEvent, digest: str
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """A first delivery's rows: the transaction, its references, the event."""
    now = utc_now()
    correlation_id = new_correlation_id()
    ignored = incoming.workflow is None
    transaction = {
        "correlation_id": correlation_id,
        "workflow": incoming.workflow,
        "state": TxState.IGNORED if ignored else TxState.RECEIVED,
        "state_reason": incoming.ignored_reason,
        "source_system": incoming.source_system,
        "event_type": incoming.event_type,
        "canonical": incoming.canonical,
        "customer_id": incoming.customer_id,
        "subscription_id": incoming.subscription_id,
        "invoice_id": incoming.invoice_id,
        "amount_minor": incoming.amount_minor,
        "currency": incoming.currency,
        "period": incoming.period,
        "ordering_key": incoming.ordering_key,
        "occurred_at": incoming.occurred_at,
        "received_at": now,
        "updated_at": now,
        "completed_at": now if ignored else None,
        "run_count": 0,
    }
    refs = [
        {
            "correlation_id": correlation_id,
            "system": incoming.source_system,
            "object_type": object_type,
            "external_id": external_id,
            "created_at": now,
        }
        for object_type in REF_KEYS
        if (external_id := getattr(incoming, f"{object_type}_id"))
    ]
    event = {
        "source": incoming.source,
        "source_event_id": incoming.source_event_id,
        "event_type": incoming.event_type,
        "status": EventStatus.IGNORED if ignored else EventStatus.ACCEPTED,
        "ignored_reason": incoming.ignored_reason,
        "correlation_id": correlation_id,
        "payload": incoming.payload,
        "payload_sha256": digest,
        "received_at": now,
        "last_delivery_at": now,
        "deliveries": 1,
    }
    return transaction, refs, event


async def record_first_delivery(
    sessionmaker: async_sessionmaker[AsyncSession], incoming: IncomingEvent
) -> InboxResult:
    """Commit an event taken for a first delivery with its transaction: record_event with
    look_first=False in a transaction of its own, raising AlreadyStored the same way.

    On PostgreSQL one statement in autocommit (hot_path.FIRST_DELIVERY): one round trip where
    BEGIN, three inserts and COMMIT were five, on every event the intake acknowledges.
    """
    async with sessionmaker() as session:
        if await autocommit_on_postgres(session):
            transaction, _, event = _new_rows(incoming, payload_digest(incoming.payload))
            params = {f"p_{k}": v for k, v in transaction.items()} | {
                f"p_event_{k}": v for k, v in event.items()
            }
            if await session.scalar(FIRST_DELIVERY, params) is None:
                raise AlreadyStored(incoming.source_event_id)
            return InboxResult(transaction["correlation_id"], event["status"], duplicate=False)
    async with sessionmaker.begin() as session:
        return await record_event(session, incoming, look_first=False)


async def _store_new(session: AsyncSession, incoming: IncomingEvent, digest: str) -> InboxResult:
    # Core inserts into the tables, not the unit of work nor ORM-enabled statements: nothing
    # reads these rows back in this session, and the intake's acknowledgement waits on every
    # statement's CPU as well as its round trip (docs/performance.md, "Intake").
    transaction, refs, event = _new_rows(incoming, digest)
    await session.execute(_INSERT_TRANSACTION, transaction)
    if refs:
        # One executemany, sent as one statement; a multi-row VALUES would be compiled afresh
        # for every request (SQLAlchemy does not cache those).
        await session.execute(_INSERT_REFS, refs)
    # ON CONFLICT DO NOTHING rather than a unique violation: a redelivery is routine, not an
    # error for PostgreSQL's log, and the caller rolls back the transaction row added above.
    stored = await session.scalar(
        insert_if_absent(session, _EVENTS, ("source", "source_event_id"), returning="id"),
        event,
    )
    if stored is None:
        raise AlreadyStored(incoming.source_event_id)
    return InboxResult(transaction["correlation_id"], event["status"], duplicate=False)
