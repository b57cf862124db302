"""Read side of the lineage store: filtered, keyset-paginated lists and whole-transaction reads."""

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Select, and_, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from lineage.enums import ACTIVE_STATES, AttemptOutcome, System, TxState
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
    # A transaction with at least one step aimed at this system.
    target_system: System | None = None
    min_amount_minor: int | None = None
    max_amount_minor: int | None = None
    currency: str | None = None
    # Last changed before this moment: a set that later changes cannot join (bulk replay).
    updated_until: datetime | None = None


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
    if flt.updated_until:
        query = query.where(tx.updated_at < flt.updated_until)
    if flt.business_key:
        key = flt.business_key
        query = query.where(
            or_(tx.customer_id == key, tx.subscription_id == key, tx.invoice_id == key)
        )
    if flt.target_system:
        query = query.where(
            exists().where(
                WorkflowStep.correlation_id == tx.correlation_id,
                WorkflowStep.target_system == flt.target_system,
            )
        )
    if flt.min_amount_minor is not None:
        query = query.where(tx.amount_minor >= flt.min_amount_minor)
    if flt.max_amount_minor is not None:
        query = query.where(tx.amount_minor <= flt.max_amount_minor)
    if flt.currency:
        query = query.where(tx.currency == flt.currency.upper())
    return query


def replayable_query(flt: TransactionFilter) -> Select[BusinessTransaction]:
    """The filter's transactions that a replay may take: settled, and started a workflow."""
    tx = BusinessTransaction
    return transactions_query(flt).where(
        tx.state.not_in(ACTIVE_STATES), tx.state != TxState.IGNORED, tx.workflow.is_not(None)
    )


@dataclass(frozen=True, slots=True)
class HeldRecord:
    system: System
    object_type: str
    external_id: str


async def target_holdings(
    session: AsyncSession, correlation_ids: list[str]
) -> dict[str, list[HeldRecord]]:
    """What each transaction's targets already hold, as lineage recorded it.

    A succeeded (or found-existing) attempt, or an external reference in a system other than
    the source, means the target has the record; a replay then finds it instead of posting.
    """
    held: dict[str, list[HeldRecord]] = {cid: [] for cid in correlation_ids}
    if not correlation_ids:
        return held
    tx = BusinessTransaction
    refs = await session.execute(
        select(
            ExternalRef.correlation_id,
            ExternalRef.system,
            ExternalRef.object_type,
            ExternalRef.external_id,
        )
        .join(tx, tx.correlation_id == ExternalRef.correlation_id)
        .where(
            ExternalRef.correlation_id.in_(correlation_ids), ExternalRef.system != tx.source_system
        )
        .order_by(ExternalRef.id)
    )
    for cid, system, object_type, external_id in refs:
        held[cid].append(HeldRecord(system, object_type, external_id))
    attempts = await session.execute(
        select(StepAttempt.correlation_id, WorkflowStep.target_system, StepAttempt.target_ref)
        .join(WorkflowStep, WorkflowStep.id == StepAttempt.step_id)
        .where(
            StepAttempt.correlation_id.in_(correlation_ids),
            StepAttempt.outcome.in_((AttemptOutcome.SUCCEEDED, AttemptOutcome.FOUND_EXISTING)),
            StepAttempt.target_ref.is_not(None),
        )
    )
    for cid, system, target_ref in attempts:
        if target_ref is None:
            continue
        if not any(r.system == system and r.external_id == target_ref for r in held[cid]):
            held[cid].append(HeldRecord(system, "record", target_ref))
    return held


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
    """A transaction with its event, every run, step and attempt, its refs and exceptions.

    Four statements however long the history: each query is an index scan well under a
    millisecond even at 20 M attempt rows, so the round trips are the cost (docs/performance.md,
    Lookup). A transaction has at most one event, so it joins the transaction's row; runs, steps
    and attempts come as one tree. Refs and exceptions stay apart: joined to each other or to
    the tree they would multiply rows.
    """
    tx_row = (
        await session.execute(
            select(BusinessTransaction, InboxEvent)
            .outerjoin(InboxEvent, InboxEvent.correlation_id == BusinessTransaction.correlation_id)
            .where(BusinessTransaction.correlation_id == correlation_id)
        )
    ).first()
    if tx_row is None:
        raise TransactionNotFound(correlation_id)
    tx, event = tx_row
    return TransactionLineage(
        tx,
        event,
        await _runs_with_steps(session, correlation_id),
        list(
            await session.scalars(
                select(ExternalRef)
                .where(ExternalRef.correlation_id == correlation_id)
                .order_by(ExternalRef.id)
            )
        ),
        list(
            await session.scalars(
                select(ExceptionItem)
                .where(ExceptionItem.correlation_id == correlation_id)
                .order_by(ExceptionItem.id)
            )
        ),
    )


async def _runs_with_steps(session: AsyncSession, correlation_id: str) -> list[RunWithSteps]:
    """Runs by number, each with its steps by ID and their attempts by number, in one query.

    Outer joins keep a run without steps and a step without attempts. The correlation ID is
    in each join, as it was in the one-query-per-level reads this replaces.
    """
    rows = await session.execute(
        select(WorkflowRun, WorkflowStep, StepAttempt)
        .outerjoin(
            WorkflowStep,
            and_(
                WorkflowStep.run_id == WorkflowRun.id,
                WorkflowStep.correlation_id == correlation_id,
            ),
        )
        .outerjoin(
            StepAttempt,
            and_(
                StepAttempt.step_id == WorkflowStep.id,
                StepAttempt.correlation_id == correlation_id,
            ),
        )
        .where(WorkflowRun.correlation_id == correlation_id)
        .order_by(WorkflowRun.number, WorkflowStep.id, StepAttempt.number)
    )
    runs: dict[int, RunWithSteps] = {}
    steps: dict[int, StepWithAttempts] = {}
    for run, step, attempt in rows:
        if run.id not in runs:
            runs[run.id] = RunWithSteps(run)
        if step is None:
            continue
        if step.id not in steps:
            steps[step.id] = StepWithAttempts(step)
            runs[run.id].steps.append(steps[step.id])
        if attempt is not None:
            steps[step.id].attempts.append(attempt)
    return list(runs.values())
