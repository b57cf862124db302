"""An attempt's outcome, committed after its call: on PostgreSQL in one statement, and the rows
exactly those that finish_attempt (with add_external_ref and settle for a success) write in a
transaction."""

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import inspect, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage import runs
from lineage.clock import utc_now
from lineage.enums import AttemptOutcome, ErrorClass, RunState, StepState, System, TxState
from lineage.models import (
    BusinessTransaction,
    ExternalRef,
    StepAttempt,
    WorkflowRun,
    WorkflowStep,
)
from tests.api.builders import add_running_run, add_transaction

SM = async_sessionmaker[AsyncSession]
# Columns that differ between two transactions by construction; a reference's created_at is
# the time of its insert.
OWN = ("id", "correlation_id", "run_id", "step_id", "idempotency_key", "created_at")


def _columns(row: Any) -> dict[str, Any]:
    return {a.key: getattr(row, a.key) for a in inspect(type(row)).column_attrs if a.key not in OWN}


async def _running_step(
    sessionmaker: SM, now: datetime, *, retried: bool
) -> tuple[runs.Claim, StepAttempt]:
    """A claimed first run whose step is being attempted; `retried`: an earlier attempt failed
    (the step carries its error) and already added the reference before its answer was lost."""
    async with sessionmaker.begin() as session:
        tx = await add_transaction(
            session, state=TxState.RUNNING, invoice_id="in_same", event_id=None, received_at=now
        )
        run = await add_running_run(session, tx, started_at=now)
    cid = tx.correlation_id
    step, attempt = await runs.record_first_attempt(
        sessionmaker, run_id=run.id, correlation_id=cid, name="erp.post_invoice",
        target=System.ERP, idempotency_key=f"{cid}:erp.post_invoice", external_id="in_same",
        now=now,
    )  # fmt: skip
    if retried:
        async with sessionmaker.begin() as session:
            await session.execute(
                update(WorkflowStep)
                .where(WorkflowStep.id == step.id)
                .values(error_class=ErrorClass.RETRYABLE, error_message="HTTP 503")
            )
            await runs.add_external_ref(
                session, cid, system=System.ERP, object_type="invoice", external_id="INV-1"
            )
    return runs.Claim(tx, run, {}), attempt


async def _pair(
    sessionmaker: SM, *, retried: bool
) -> tuple[runs.Claim, StepAttempt, runs.Claim, StepAttempt]:
    """Two steps in the same state: one to write the new way, one the transaction's way."""
    since = utc_now() - timedelta(seconds=5)
    written, attempt = await _running_step(sessionmaker, since, retried=retried)
    reference, other = await _running_step(sessionmaker, since, retried=retried)
    return written, attempt, reference, other


async def _rows(sessionmaker: SM, cid: str) -> list[dict[str, Any]]:
    async with sessionmaker() as session:
        found: list[dict[str, Any]] = []
        for model in (BusinessTransaction, WorkflowRun, WorkflowStep, StepAttempt, ExternalRef):
            rows = await session.scalars(select(model).where(model.correlation_id == cid))
            found += [_columns(row) | {"table": model.__tablename__} for row in rows]
        return found


@pytest.mark.parametrize("retried", [False, True], ids=["first", "retried"])
@pytest.mark.parametrize("last", [False, True], ids=["step", "last_step"])
async def test_a_success_writes_the_rows_a_transaction_would(
    sessionmaker: SM, retried: bool, last: bool
) -> None:
    written, attempt, reference, other = await _pair(sessionmaker, retried=retried)
    now = utc_now()
    outcome: dict[str, Any] = {
        "now": now,
        "outcome": AttemptOutcome.SUCCEEDED,
        "step_state": StepState.SUCCEEDED,
        "http_status": 201,
        "target_ref": "INV-1",
        "output": {"erp_invoice": "INV-1"},
    }

    await runs.record_success(
        sessionmaker, written, attempt,
        ref=runs.Reference(System.ERP, "invoice", "INV-1"),
        posting=runs.Posting("done") if last else None, **outcome,
    )  # fmt: skip
    async with sessionmaker.begin() as session:
        await runs.finish_attempt(session, other, **outcome)
        await runs.add_external_ref(
            session, reference.transaction.correlation_id,
            system=System.ERP, object_type="invoice", external_id="INV-1",
        )  # fmt: skip
        if last:
            await runs.settle(session, reference, state=TxState.POSTED, now=now, reason="done")

    rows = await _rows(sessionmaker, written.transaction.correlation_id)
    assert rows == await _rows(sessionmaker, reference.transaction.correlation_id)
    by_table = {row["table"]: row for row in rows}
    assert [row["object_type"] for row in rows if row.get("system") is System.ERP] == ["invoice"]
    assert by_table["workflow_step"]["state"] is StepState.SUCCEEDED
    assert by_table["workflow_step"]["error_message"] is None
    assert by_table["step_attempt"]["target_ref"] == "INV-1"
    assert by_table["business_transaction"]["state"] is (
        TxState.POSTED if last else TxState.RUNNING
    )
    assert by_table["workflow_run"]["state"] is (RunState.SUCCEEDED if last else RunState.RUNNING)


async def test_a_skipped_step_with_no_reference_settles_the_transaction(sessionmaker: SM) -> None:
    claimed, attempt = await _running_step(sessionmaker, utc_now(), retried=False)
    await runs.record_success(
        sessionmaker, claimed, attempt, now=utc_now(), outcome=AttemptOutcome.SUCCEEDED,
        step_state=StepState.SKIPPED, output={"skipped": "nothing to bill"},
        posting=runs.Posting(),
    )  # fmt: skip

    rows = await _rows(sessionmaker, claimed.transaction.correlation_id)
    by_table = {row["table"]: row for row in rows}
    # Only the billing invoice the transaction was built with.
    assert [row["system"] for row in rows if row["table"] == "external_ref"] == [System.BILLING]
    assert by_table["workflow_step"]["state"] is StepState.SKIPPED
    assert by_table["workflow_step"]["output"] == {"skipped": "nothing to bill"}
    assert by_table["business_transaction"]["state"] is TxState.POSTED
    assert by_table["business_transaction"]["lease_owner"] is None
    assert by_table["workflow_run"]["state"] is RunState.SUCCEEDED


@pytest.mark.parametrize(
    ("state", "due_in_s"),
    [(StepState.FAILED_RETRYABLE, 30), (StepState.FAILED_TERMINAL, None)],
    ids=["retry", "terminal"],
)
async def test_a_failed_attempt_writes_the_rows_a_transaction_would(
    sessionmaker: SM, state: StepState, due_in_s: int | None
) -> None:
    written, attempt, reference, other = await _pair(sessionmaker, retried=False)
    now = utc_now()
    outcome: dict[str, Any] = {
        "now": now,
        "outcome": AttemptOutcome.FAILED,
        "step_state": state,
        "error_class": ErrorClass.RETRYABLE if due_in_s else ErrorClass.TERMINAL,
        "error_message": "HTTP 503" if due_in_s else "HTTP 400: invalid currency",
        "http_status": 503 if due_in_s else 400,
        "next_attempt_at": now + timedelta(seconds=due_in_s) if due_in_s else None,
    }

    await runs.record_outcome(sessionmaker, attempt, **outcome)
    async with sessionmaker.begin() as session:
        await runs.finish_attempt(session, other, **outcome)

    rows = await _rows(sessionmaker, written.transaction.correlation_id)
    assert rows == await _rows(sessionmaker, reference.transaction.correlation_id)
    by_table = {row["table"]: row for row in rows}
    assert by_table["workflow_step"]["state"] is state
    assert by_table["workflow_step"]["error_message"] == outcome["error_message"]
    assert (by_table["workflow_step"]["ended_at"] is None) is (due_in_s is not None)
    assert by_table["step_attempt"]["http_status"] == outcome["http_status"]
    # The transaction is the engine's to settle afterwards; the outcome leaves it running.
    assert by_table["business_transaction"]["state"] is TxState.RUNNING
