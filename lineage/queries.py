"""Read side of the lineage store: filtered, keyset-paginated lists and whole-transaction reads."""

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from lineage.enums import System, TxState
from lineage.errors import InvalidCursor, TransactionNotFound
from lineage.models import (
    BusinessTransaction,
    ExceptionItem,
    ExternalRef,
    InboxEvent,
    StepAttempt,
    WorkflowRun,
    WorkflowStep,
)


@dataclass(frozen=True, slots=True)
class TransactionFilter:
    states: tuple[TxState, ...] = ()
    workflow: str | None = None
    source_system: System | None = None
    since: datetime | None = None
    until: datetime | None = None
    # Matches the customer, subscription or invoice ID.
    business_key: str | None = None


def encode_cursor(tx: BusinessTransaction) -> str:
    raw = json.dumps([tx.received_at.isoformat(), tx.correlation_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        received, correlation_id = json.loads(raw)
        return datetime.fromisoformat(received), str(correlation_id)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InvalidCursor() from exc


def transactions_query(flt: TransactionFilter) -> Select[BusinessTransaction]:
    tx = BusinessTransaction
    query = select(tx)
    if flt.states:
        query = query.where(tx.state.in_(flt.states))
    if flt.workflow:
        query = query.where(tx.workflow == flt.workflow)
    if flt.source_system:
        query = query.where(tx.source_system == flt.source_system)
    if flt.since:
        query = query.where(tx.received_at >= flt.since)
    if flt.until:
        query = query.where(tx.received_at < flt.until)
    if flt.business_key:
        key = flt.business_key
        query = query.where(
            or_(tx.customer_id == key, tx.subscription_id == key, tx.invoice_id == key)
        )
    return query


async def list_transactions(
    session: AsyncSession, flt: TransactionFilter, *, limit: int, cursor: str | None = None
) -> tuple[list[BusinessTransaction], str | None]:
    """Newest first; returns (rows, cursor of the next page or None)."""
    tx = BusinessTransaction
    query = transactions_query(flt)
    if cursor:
        received, correlation_id = decode_cursor(cursor)
        query = query.where(
            or_(
                tx.received_at < received,
                and_(tx.received_at == received, tx.correlation_id < correlation_id),
            )
        )
    query = query.order_by(tx.received_at.desc(), tx.correlation_id.desc()).limit(limit + 1)
    rows = list(await session.scalars(query))
    if len(rows) > limit:
        return rows[:limit], encode_cursor(rows[limit - 1])
    return rows, None


@dataclass(slots=True)
class StepWithAttempts:
    step: WorkflowStep
    attempts: list[StepAttempt] = field(default_factory=list)


@dataclass(slots=True)
class RunWithSteps:
    run: WorkflowRun
    steps: list[StepWithAttempts] = field(default_factory=list)


@dataclass(slots=True)
class TransactionLineage:
    transaction: BusinessTransaction
    event: InboxEvent | None
    runs: list[RunWithSteps]
    external_refs: list[ExternalRef]
    exceptions: list[ExceptionItem]


async def get_transaction(session: AsyncSession, correlation_id: str) -> BusinessTransaction:
    tx = await session.get(BusinessTransaction, correlation_id)
    if tx is None:
        raise TransactionNotFound(correlation_id)
    return tx


async def transaction_lineage(session: AsyncSession, correlation_id: str) -> TransactionLineage:
    """A transaction with its event, every run, step and attempt, its refs and exceptions."""
    tx = await get_transaction(session, correlation_id)
    event = await session.scalar(
        select(InboxEvent).where(InboxEvent.correlation_id == correlation_id)
    )
    runs = {
        run.id: RunWithSteps(run)
        for run in await session.scalars(
            select(WorkflowRun)
            .where(WorkflowRun.correlation_id == correlation_id)
            .order_by(WorkflowRun.number)
        )
    }
    steps: dict[int, StepWithAttempts] = {}
    for step in await session.scalars(
        select(WorkflowStep)
        .where(WorkflowStep.correlation_id == correlation_id)
        .order_by(WorkflowStep.id)
    ):
        steps[step.id] = StepWithAttempts(step)
        runs[step.run_id].steps.append(steps[step.id])
    for attempt in await session.scalars(
        select(StepAttempt)
        .where(StepAttempt.correlation_id == correlation_id)
        .order_by(StepAttempt.step_id, StepAttempt.number)
    ):
        steps[attempt.step_id].attempts.append(attempt)
    refs = await session.scalars(
        select(ExternalRef)
        .where(ExternalRef.correlation_id == correlation_id)
        .order_by(ExternalRef.id)
    )
    exceptions = await session.scalars(
        select(ExceptionItem)
        .where(ExceptionItem.correlation_id == correlation_id)
        .order_by(ExceptionItem.id)
    )
    return TransactionLineage(tx, event, list(runs.values()), list(refs), list(exceptions))
