"""Suspected poison events run one at a time (orchestrator/quarantine.py): a transaction whose
call died with its worker waits while another suspect holds the slot, and nobody else does."""

import asyncio
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage import runs
from lineage.clock import utc_now
from lineage.enums import TxState
from lineage.models import BusinessTransaction, StepAttempt, WorkflowRun
from orchestrator import engine, quarantine
from orchestrator.client.canonical import Invoice
from orchestrator.connectors.ports import CallContext, TargetRecord
from orchestrator.deps import WorkerDeps
from orchestrator.engine import Outcome
from tests.dbutil import invoice_transaction
from tests.fakes import ScriptedErp, WorkerKilled

DepsFactory = Callable[..., WorkerDeps]


async def _due_now(sessionmaker: async_sessionmaker[AsyncSession], correlation_id: str) -> None:
    """Skip the wait a retry or an expired lease would take."""
    async with sessionmaker.begin() as session:
        tx = await session.get(BusinessTransaction, correlation_id)
        assert tx is not None
        tx.next_attempt_at = None
        tx.lease_expires_at = utc_now() - timedelta(seconds=1)


async def _state(
    sessionmaker: async_sessionmaker[AsyncSession], correlation_id: str
) -> tuple[TxState, str | None]:
    async with sessionmaker() as session:
        tx = await session.get(BusinessTransaction, correlation_id)
        assert tx is not None
        return tx.state, tx.state_reason


async def _runs_while_another_holds_the_slot(worker: WorkerDeps, correlation_id: str) -> Outcome:
    other = worker.redis.lock(quarantine.SLOT_KEY, timeout=30)
    assert await other.acquire(blocking=False)
    try:
        return await engine.run_transaction(worker, correlation_id)
    finally:
        await other.release()


async def test_a_suspect_waits_while_another_holds_the_slot_then_runs(
    make_deps: DepsFactory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # The first call dies with its worker.
    erp = ScriptedErp(failures=[WorkerKilled()])
    worker = make_deps(erp)
    correlation_id = await invoice_transaction(sessionmaker, "in_suspect")
    with pytest.raises(WorkerKilled):
        await engine.run_transaction(worker, correlation_id)
    await _due_now(sessionmaker, correlation_id)
    # The next holder closes the dead attempt and backs off.
    assert await engine.run_transaction(worker, correlation_id) is Outcome.RETRY_SCHEDULED
    await _due_now(sessionmaker, correlation_id)
    other = worker.redis.lock(quarantine.SLOT_KEY, timeout=30)
    assert await other.acquire(blocking=False)
    try:
        assert await engine.run_transaction(worker, correlation_id) is Outcome.RETRY_SCHEDULED
        state, reason = await _state(sessionmaker, correlation_id)
        assert state is TxState.RETRYING
        assert reason is not None
        assert "waits for another suspected poison event" in reason
        # No attempt while it waited: the one post is the call that died.
        assert (len(erp.posts), erp.lookups) == (1, 0)
    finally:
        await other.release()
    await _due_now(sessionmaker, correlation_id)

    assert await engine.run_transaction(worker, correlation_id) is Outcome.POSTED
    # It looked up what the dead call may have left before posting again, and gave the slot back.
    assert erp.lookups == 1
    assert await worker.redis.exists(quarantine.SLOT_KEY) == 0


async def test_a_transaction_that_never_died_runs_while_a_suspect_holds_the_slot(
    make_deps: DepsFactory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    erp = ScriptedErp()
    worker = make_deps(erp)
    correlation_id = await invoice_transaction(sessionmaker, "in_bystander")
    assert await _runs_while_another_holds_the_slot(worker, correlation_id) is Outcome.POSTED
    assert len(erp.posts) == 1


class _HangingErp(ScriptedErp):
    """An ERP whose first invoice post never answers."""

    async def post_invoice(self, invoice: Invoice, *, ctx: CallContext) -> TargetRecord:
        if not self.posts:
            self.calls.append(("post_invoice", ctx))
            await asyncio.Event().wait()
        return await super().post_invoice(invoice, ctx=ctx)


async def test_a_job_cancelled_mid_call_is_no_suspect_and_looks_up_before_posting_again(
    make_deps: DepsFactory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    erp = _HangingErp()
    worker = make_deps(erp)
    correlation_id = await invoice_transaction(sessionmaker, "in_timed_out")
    # As arq ends a job at CONCORD_JOB_TIMEOUT_S: the job's task is cancelled mid-call.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(engine.run_transaction(worker, correlation_id), 0.5)
    async with sessionmaker() as session:
        [run] = (await session.scalars(select(WorkflowRun))).all()
        [attempt] = (await session.scalars(select(StepAttempt))).all()
        # Closed by the cancelled job itself, and not as a death.
        assert attempt.ended_at is not None
        assert attempt.error_message == runs.CANCELLED_ATTEMPT
        assert await runs.steps_that_died(session, run.id) == set()
    await _due_now(sessionmaker, correlation_id)
    # Another suspect holds the slot, and this one is not held back by it.
    assert await _runs_while_another_holds_the_slot(worker, correlation_id) is Outcome.POSTED
    # Its outcome was unknown: it looked the record up before posting again.
    assert (len(erp.posts), erp.lookups, len(erp.records)) == (2, 1, 1)
