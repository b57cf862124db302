"""A step's first attempt, recorded before the call: on PostgreSQL in one statement, and the rows
exactly those the transaction of start_attempt writes."""

from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage import runs
from lineage.clock import utc_now
from lineage.enums import System, TxState
from lineage.models import StepAttempt, WorkflowStep
from tests.api.builders import add_running_run, add_transaction

SM = async_sessionmaker[AsyncSession]


def _columns(row: Any, *skip: str) -> dict[str, Any]:
    return {
        a.key: getattr(row, a.key) for a in inspect(type(row)).column_attrs if a.key not in skip
    }


async def test_the_first_attempt_writes_the_rows_a_transaction_would(sessionmaker: SM) -> None:
    now = utc_now()
    async with sessionmaker.begin() as session:
        tx = await add_transaction(session, state=TxState.RUNNING)
        run = await add_running_run(session, tx, started_at=now)
        run_id, cid = run.id, tx.correlation_id
    common: dict[str, Any] = {
        "run_id": run_id,
        "correlation_id": cid,
        "target": System.ERP,
        "now": now,
    }

    step, attempt = await runs.record_first_attempt(
        sessionmaker, name="erp.post_invoice", idempotency_key=f"{cid}:erp.post_invoice",
        external_id="in_1", **common,
    )  # fmt: skip
    async with sessionmaker.begin() as session:
        other_step, other_attempt = await runs.start_attempt(
            session, name="erp.post_credit", idempotency_key=f"{cid}:erp.post_credit",
            external_id="in_1", new=True, **common,
        )  # fmt: skip

    async with sessionmaker() as session:
        steps = {s.name: s for s in await session.scalars(select(WorkflowStep))}
        attempts = {a.step_id: a for a in await session.scalars(select(StepAttempt))}
    written, reference = steps["erp.post_invoice"], steps["erp.post_credit"]
    assert (step.id, attempt.id) == (written.id, attempts[written.id].id)
    assert (step.attempt_count, attempt.number, attempt.step_id) == (1, 1, written.id)
    assert _columns(written, "id", "name", "idempotency_key") == _columns(
        reference, "id", "name", "idempotency_key"
    )
    assert _columns(attempts[written.id], "id", "step_id") == _columns(
        attempts[reference.id], "id", "step_id"
    )
    assert other_step.id == reference.id
    assert other_attempt.id == attempts[reference.id].id
