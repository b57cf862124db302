"""Usage events and CloudEvents batches at intake: stored in one commit, then answered.

A usage event becomes a usage record (lineage.usage), not a transaction: the aggregation job
later counts each closed period's records into one summary transaction. A batch
(`application/cloudevents-batch+json`) is checked whole before anything is stored, and stored
in one database transaction, so a refused batch leaves nothing behind.
"""

from typing import Any

from arq.connections import ArqRedis
from fastapi import BackgroundTasks
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.errors import ApiError
from api.intake import incoming_event
from api.schemas_intake import BatchResponse, EventResult
from lineage import inbox, usage
from lineage.enums import EventStatus, System
from lineage.usage import IncomingUsage
from orchestrator.client import cloudevents_intake
from orchestrator.client.canonical import Ignored, NotAnEvent, Routed
from orchestrator.client.queue import try_enqueue_wakeup
from orchestrator.client.tracing import current_traceparent
from orchestrator.client.usage import Metered

CLOUDEVENT_TYPES = ("application/json", "application/cloudevents+json")
BATCH_TYPE = "application/cloudevents-batch+json"
MAX_BATCH = 1000


def incoming_usage(
    attributes: dict[str, Any], payload: dict[str, Any], decision: Metered
) -> IncomingUsage:
    event = decision.usage
    return IncomingUsage(
        source=attributes["source"],
        source_event_id=attributes["id"],
        payload=payload,
        subscription_id=event.subscription_id,
        customer_id=event.customer_id,
        metric=event.metric,
        quantity=event.quantity,
        unit_amount_minor=event.unit_amount_minor,
        currency=event.currency,
        occurred_at=event.occurred_at,
        period=event.period,
    )


async def commit_usage(
    sessionmaker: async_sessionmaker[AsyncSession],
    attributes: dict[str, Any],
    payload: dict[str, Any],
    decision: Metered,
) -> EventResult:
    """Store one usage event before the answer; a redelivery is counted, not stored again."""
    batch = _Batch()
    batch.add(0, attributes, payload, decision)
    [result] = await batch.commit(sessionmaker)
    return result


async def commit_batch(
    sessionmaker: async_sessionmaker[AsyncSession],
    arq: ArqRedis,
    background: BackgroundTasks,
    raw: bytes,
) -> BatchResponse:
    """Validate every event of a batch, store them all in one commit, then queue wake-ups."""
    try:
        events = cloudevents_intake.parse_batch(raw)
    except NotAnEvent as exc:
        raise ApiError(400, "not_an_event", str(exc)) from exc
    if not events:
        raise ApiError(400, "empty_batch", "the batch holds no events")
    if len(events) > MAX_BATCH:
        raise ApiError(
            400, "batch_too_large", f"a batch holds at most {MAX_BATCH} events, not {len(events)}"
        )
    batch = _Batch()
    for index, (payload, item) in enumerate(events):
        try:
            attributes, data = cloudevents_intake.parse(item)
            decision = cloudevents_intake.route(attributes["type"], data)
        except NotAnEvent as exc:
            event_id = payload.get("id")
            raise ApiError(
                400,
                "not_an_event",
                f"event {index} ({event_id!r}) of the batch: {exc}; nothing was stored",
                details={"index": index, "id": event_id},
            ) from exc
        batch.add(index, attributes, payload, decision)
    results = await batch.commit(sessionmaker)
    for result in results:
        if result.correlation_id and not result.duplicate and result.status is EventStatus.ACCEPTED:
            background.add_task(
                try_enqueue_wakeup, arq, result.correlation_id, current_traceparent()
            )
    return BatchResponse(
        accepted=sum(not r.duplicate for r in results),
        duplicates=sum(r.duplicate for r in results),
        events=results,
    )


class _Batch:
    """Events in arrival order; usage goes to the usage table in one insert, the rest to the
    inbox, all in one database transaction."""

    def __init__(self) -> None:
        self._usage: list[tuple[int, IncomingUsage, str]] = []
        self._others: list[tuple[int, inbox.IncomingEvent]] = []
        self._size = 0

    def add(
        self,
        index: int,
        attributes: dict[str, Any],
        payload: dict[str, Any],
        decision: Routed | Ignored | Metered,
    ) -> None:
        self._size += 1
        if isinstance(decision, Metered):
            incoming = incoming_usage(attributes, payload, decision)
            self._usage.append((index, incoming, decision.usage.usage_key))
            return
        self._others.append(
            (
                index,
                incoming_event(
                    source=attributes["source"],
                    source_event_id=attributes["id"],
                    event_type=attributes["type"],
                    payload=payload,
                    decision=decision,
                    source_system=System.CONCORD,
                ),
            )
        )

    async def commit(self, sessionmaker: async_sessionmaker[AsyncSession]) -> list[EventResult]:
        for attempt in range(3):
            try:
                async with sessionmaker.begin() as session:
                    return await self._store(session)
            except (inbox.AlreadyStored, IntegrityError):
                # A concurrent delivery of one of these events won its unique key: retry, and
                # find its row this time.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _store(self, session: AsyncSession) -> list[EventResult]:
        results: list[EventResult | None] = [None] * self._size
        conflicts: list[str] = []
        stored = await usage.record_usage(session, [incoming for _, incoming, _ in self._usage])
        for (index, incoming, key), outcome in zip(self._usage, stored, strict=True):
            if outcome.conflict:
                conflicts.append(incoming.source_event_id)
            results[index] = EventResult(
                id=incoming.source_event_id,
                status=EventStatus.ACCEPTED,
                duplicate=outcome.duplicate,
                usage_key=key,
            )
        for index, event in self._others:
            result = await inbox.record_event(session, event)
            if result.conflict:
                conflicts.append(event.source_event_id)
            results[index] = EventResult(
                id=event.source_event_id,
                status=result.status,
                duplicate=result.duplicate,
                correlation_id=result.correlation_id,
            )
        if conflicts:
            # Raised inside the transaction, so nothing of this request is committed.
            raise ApiError(
                409,
                "event_id_conflict",
                f"{len(conflicts)} event(s) were already received with a different body: "
                f"{', '.join(conflicts[:10])}; nothing was stored",
                details={"ids": conflicts},
            )
        return [r for r in results if r is not None]
