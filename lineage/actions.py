"""What people do to transactions: replay them and resolve them by hand."""

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from lineage.enums import ACTIVE_STATES, ExceptionStatus, RunState, TxState
from lineage.errors import NotReplayable, TransactionBusy, TransactionNotFound
from lineage.models import BusinessTransaction, ExceptionItem, WorkflowRun


async def _take_settled(
    session: AsyncSession,
    correlation_id: str,
    *,
    state: TxState,
    reason: str,
    now: datetime,
    bump_run: bool,
) -> BusinessTransaction:
    """Move a settled transaction to `state` in one conditional UPDATE, so two people racing
    to act on it cannot both succeed."""
    tx = BusinessTransaction
    values: dict[str, Any] = {
        "state": state,
        "state_reason": reason,
        "updated_at": now,
        "next_attempt_at": None,
        "lease_owner": None,
        "lease_expires_at": None,
        "completed_at": None if state in ACTIVE_STATES else now,
    }
    if bump_run:
        values["run_count"] = tx.run_count + 1
    result = await session.execute(
        update(tx)
        .where(
            tx.correlation_id == correlation_id,
            tx.state.not_in(ACTIVE_STATES),
            tx.workflow.is_not(None),
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    row = await session.get(tx, correlation_id, populate_existing=True)
    if row is None:
        raise TransactionNotFound(correlation_id)
    if getattr(result, "rowcount", 0) != 1:
        if row.workflow is None:
            raise NotReplayable(correlation_id, "its event started no workflow")
        raise TransactionBusy(correlation_id, row.state)
    return row


async def start_replay(
    session: AsyncSession,
    correlation_id: str,
    *,
    requested_by: str,
    reason: str,
    now: datetime,
    from_step: str | None = None,
    input_override: dict[str, Any] | None = None,
    force_new_posting: bool = False,
) -> WorkflowRun:
    """Open a new run of a settled transaction; the caller enqueues the wake-up after commit.

    The run reuses the transaction's idempotency keys, so the targets recognise a record that
    an earlier run already created.
    """
    tx = await _take_settled(
        session,
        correlation_id,
        state=TxState.PENDING,
        now=now,
        bump_run=True,
        reason=f"replay requested by {requested_by}: {reason}",
    )
    await session.execute(
        update(WorkflowRun)
        .where(WorkflowRun.correlation_id == correlation_id, WorkflowRun.state == RunState.RUNNING)
        .values(state=RunState.FAILED, ended_at=now)
    )
    run = WorkflowRun(
        correlation_id=correlation_id,
        number=tx.run_count,
        trigger="replay",
        requested_by=requested_by,
        reason=reason,
        input_override=input_override,
        from_step=from_step,
        force_new_posting=force_new_posting,
        state=RunState.RUNNING,
        started_at=now,
    )
    session.add(run)
    await session.flush()
    return run


async def resolve_manually(
    session: AsyncSession,
    correlation_id: str,
    *,
    actor: str,
    resolution: str,
    note: str,
    now: datetime,
) -> BusinessTransaction:
    """Close a settled transaction by hand and its open exceptions with it."""
    tx = await _take_settled(
        session,
        correlation_id,
        state=TxState.MANUALLY_RESOLVED,
        now=now,
        bump_run=False,
        reason=f"{resolution} by {actor}: {note}",
    )
    await session.execute(
        update(ExceptionItem)
        .where(
            ExceptionItem.correlation_id == correlation_id,
            ExceptionItem.status == ExceptionStatus.OPEN,
        )
        .values(
            status=ExceptionStatus.RESOLVED,
            resolved_at=now,
            resolved_by=actor,
            resolution_note=f"{resolution}: {note}",
        )
    )
    return tx
