"""Usage records: stored in bulk at intake, claimed once by a period summary.

A usage event starts no transaction of its own (10,000 of them would be 10,000 ERP postings);
its row is the acknowledgement, and the summary that counts it links it to one transaction.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import distinct, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lineage.clock import utc_now
from lineage.inbox import payload_digest
from lineage.models import UsageRecord


@dataclass(frozen=True, slots=True)
class IncomingUsage:
    source: str
    source_event_id: str
    payload: dict[str, Any]
    subscription_id: str
    customer_id: str
    metric: str
    quantity: int
    unit_amount_minor: int
    currency: str
    occurred_at: datetime
    period: str


@dataclass(frozen=True, slots=True)
class UsageResult:
    source_event_id: str
    duplicate: bool
    # The same event ID arrived earlier (or earlier in the batch) with another body.
    conflict: bool = False


async def record_usage(session: AsyncSession, items: Sequence[IncomingUsage]) -> list[UsageResult]:
    """Insert the new events in one statement and count redeliveries of stored ones.

    Nothing is written for a conflicting event; the caller refuses the request and rolls back.
    Two concurrent first deliveries race on the (source, source_event_id) unique key: the
    loser's flush raises IntegrityError and the caller retries, finding the winner's rows.
    """
    if not items:
        return []
    stored: dict[tuple[str, str], tuple[int | None, str]] = {
        (source, event_id): (row_id, digest)
        for row_id, source, event_id, digest in await session.execute(
            select(
                UsageRecord.id,
                UsageRecord.source,
                UsageRecord.source_event_id,
                UsageRecord.payload_sha256,
            ).where(UsageRecord.source_event_id.in_({i.source_event_id for i in items}))
        )
    }
    now = utc_now()
    results: list[UsageResult] = []
    redelivered: set[int] = set()
    rows: list[dict[str, Any]] = []
    for item in items:
        key = (item.source, item.source_event_id)
        digest = payload_digest(item.payload)
        if key in stored:
            row_id, known = stored[key]
            if known != digest:
                results.append(UsageResult(item.source_event_id, True, conflict=True))
                continue
            if row_id is not None:
                redelivered.add(row_id)
            results.append(UsageResult(item.source_event_id, duplicate=True))
            continue
        # A repeat later in the same batch is a duplicate of this one (id None: not yet stored).
        stored[key] = (None, digest)
        rows.append(_row(item, digest, now))
        results.append(UsageResult(item.source_event_id, duplicate=False))
    if any(r.conflict for r in results):
        return results
    if rows:
        await session.execute(insert(UsageRecord), rows)
    if redelivered:
        await session.execute(
            update(UsageRecord)
            .where(UsageRecord.id.in_(redelivered))
            .values(deliveries=UsageRecord.deliveries + 1, last_delivery_at=now)
        )
    return results


def _row(item: IncomingUsage, digest: str, now: datetime) -> dict[str, Any]:
    return {
        "source": item.source,
        "source_event_id": item.source_event_id,
        "payload": item.payload,
        "payload_sha256": digest,
        "subscription_id": item.subscription_id,
        "customer_id": item.customer_id,
        "metric": item.metric,
        "quantity": item.quantity,
        "unit_amount_minor": item.unit_amount_minor,
        "amount_minor": item.quantity * item.unit_amount_minor,
        "currency": item.currency,
        "period": item.period,
        "occurred_at": item.occurred_at,
        "received_at": now,
        "deliveries": 1,
        "last_delivery_at": now,
    }


@dataclass(frozen=True, slots=True)
class UsageGroup:
    subscription_id: str
    period: str
    currency: str


async def open_groups(session: AsyncSession, *, before_period: str) -> list[UsageGroup]:
    """(subscription, period, currency) with uncounted usage in periods before `before_period`."""
    u = UsageRecord
    rows = await session.execute(
        select(u.subscription_id, u.period, u.currency)
        .where(u.summary_correlation_id.is_(None), u.period < before_period)
        .group_by(u.subscription_id, u.period, u.currency)
        .order_by(u.period, u.subscription_id, u.currency)
    )
    return [UsageGroup(*row) for row in rows]


async def claim_group(session: AsyncSession, group: UsageGroup, *, correlation_id: str) -> int:
    """Link the group's uncounted rows to a summary; returns how many it took.

    One conditional UPDATE decides, so two aggregation jobs can never count a row twice: the
    second waits for the first's row locks and then finds nothing left to take.
    """
    u = UsageRecord
    result = await session.execute(
        update(u)
        .where(
            u.subscription_id == group.subscription_id,
            u.period == group.period,
            u.currency == group.currency,
            u.summary_correlation_id.is_(None),
        )
        .values(summary_correlation_id=correlation_id)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0))


@dataclass(frozen=True, slots=True)
class MetricTotal:
    metric: str
    quantity: int
    amount_minor: int
    events: int


async def claimed_totals(
    session: AsyncSession, correlation_id: str
) -> tuple[list[MetricTotal], str, datetime]:
    """Per-metric totals of a summary's rows, its customer and its latest usage time."""
    u = UsageRecord
    totals = [
        MetricTotal(metric, int(quantity), int(amount), int(events))
        for metric, quantity, amount, events in await session.execute(
            select(u.metric, func.sum(u.quantity), func.sum(u.amount_minor), func.count())
            .where(u.summary_correlation_id == correlation_id)
            .group_by(u.metric)
            .order_by(u.metric)
        )
    ]
    # The customer the subscription belonged to at its latest usage.
    customer_id, latest = (
        await session.execute(
            select(u.customer_id, u.occurred_at)
            .where(u.summary_correlation_id == correlation_id)
            .order_by(u.occurred_at.desc(), u.id.desc())
            .limit(1)
        )
    ).one()
    return totals, customer_id, latest


async def earlier_summaries(session: AsyncSession, group: UsageGroup, *, excluding: str) -> int:
    """How many summaries already counted usage of this group: the next one's sequence."""
    u = UsageRecord
    count = await session.scalar(
        select(func.count(distinct(u.summary_correlation_id))).where(
            u.subscription_id == group.subscription_id,
            u.period == group.period,
            u.currency == group.currency,
            u.summary_correlation_id.is_not(None),
            u.summary_correlation_id != excluding,
        )
    )
    return int(count or 0)
