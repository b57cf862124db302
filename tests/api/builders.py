"""Hand-built lineage rows for API tests that need exact states and timings."""

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from lineage.clock import new_correlation_id, utc_now
from lineage.enums import (
    AttemptOutcome,
    ErrorClass,
    EventStatus,
    ExceptionStatus,
    RunState,
    StepState,
    System,
    TxState,
)
from lineage.models import (
    BusinessTransaction,
    ExceptionItem,
    ExternalRef,
    InboxEvent,
    StepAttempt,
    WorkflowRun,
    WorkflowStep,
)

STEP = "erp.post_invoice"


def canonical(
    invoice_id: str, *, amount_minor: int = 1000, currency: str = "USD"
) -> dict[str, Any]:
    return {
        "invoice_id": invoice_id,
        "customer_id": "cus_built",
        "subscription_id": "sub_built",
        "amount_minor": amount_minor,
        "currency": currency,
        "period_start": None,
        "period_end": None,
        "lines": [],
    }


async def add_transaction(
    session: AsyncSession,
    *,
    state: TxState,
    received_at: datetime | None = None,
    completed_after_s: float | None = None,
    workflow: str | None = "invoice_generated",
    amount_minor: int = 1000,
    currency: str = "USD",
    invoice_id: str | None = None,
    subscription_id: str = "sub_built",
    customer_id: str = "cus_built",
    occurred_at: datetime | None = None,
    event_id: str | None = None,
) -> BusinessTransaction:
    received = received_at or utc_now()
    cid = new_correlation_id()
    invoice = invoice_id or f"in_{cid[-12:]}"
    tx = BusinessTransaction(
        correlation_id=cid,
        workflow=workflow,
        state=state,
        source_system=System.BILLING,
        event_type="invoice.finalized",
        canonical=canonical(invoice, amount_minor=amount_minor, currency=currency),
        customer_id=customer_id,
        subscription_id=subscription_id,
        invoice_id=invoice,
        amount_minor=amount_minor,
        currency=currency,
        occurred_at=occurred_at,
        received_at=received,
        updated_at=received,
        completed_at=None
        if completed_after_s is None
        else received + timedelta(seconds=completed_after_s),
        run_count=0,
    )
    session.add(tx)
    await session.flush()
    session.add(
        InboxEvent(
            source="stripe",
            source_event_id=event_id or f"evt_{cid[-12:]}",
            event_type="invoice.finalized",
            status=EventStatus.ACCEPTED,
            correlation_id=cid,
            payload={"id": event_id},
            payload_sha256="0" * 64,
            received_at=received,
            last_delivery_at=received,
        )
    )
    session.add(
        ExternalRef(
            correlation_id=cid, system=System.BILLING, object_type="invoice", external_id=invoice
        )
    )
    await session.flush()
    return tx


async def add_running_run(
    session: AsyncSession, tx: BusinessTransaction, *, started_at: datetime
) -> WorkflowRun:
    """Run 1 of a claimed transaction, open, with no step yet."""
    run = WorkflowRun(
        correlation_id=tx.correlation_id,
        number=1,
        trigger="initial",
        state=RunState.RUNNING,
        started_at=started_at,
    )
    session.add(run)
    await session.flush()
    return run


async def add_run(
    session: AsyncSession,
    tx: BusinessTransaction,
    *,
    succeeded: bool,
    erp_id: str | None = None,
) -> WorkflowRun:
    """One run with one ERP step: succeeded (with the ERP record) or failed after two attempts."""
    now = utc_now()
    tx.run_count += 1
    run = WorkflowRun(
        correlation_id=tx.correlation_id,
        number=tx.run_count,
        trigger="initial",
        state=RunState.SUCCEEDED if succeeded else RunState.FAILED,
        started_at=now,
        ended_at=now,
    )
    session.add(run)
    await session.flush()
    step = WorkflowStep(
        run_id=run.id,
        correlation_id=tx.correlation_id,
        name=STEP,
        target_system=System.ERP,
        state=StepState.SUCCEEDED if succeeded else StepState.FAILED_TERMINAL,
        idempotency_key=f"{tx.correlation_id}:{STEP}",
        external_id=tx.invoice_id,
        attempt_count=1,
        started_at=now,
        ended_at=now,
    )
    session.add(step)
    await session.flush()
    session.add(
        StepAttempt(
            step_id=step.id,
            correlation_id=tx.correlation_id,
            number=1,
            started_at=now,
            ended_at=now,
            outcome=AttemptOutcome.SUCCEEDED if succeeded else AttemptOutcome.FAILED,
            error_class=None if succeeded else ErrorClass.RETRYABLE,
            http_status=204 if succeeded else None,
            target_ref=erp_id if succeeded else None,
        )
    )
    if succeeded and erp_id:
        session.add(
            ExternalRef(
                correlation_id=tx.correlation_id,
                system=System.ERP,
                object_type="invoice",
                external_id=erp_id,
            )
        )
    else:
        session.add(
            ExceptionItem(
                correlation_id=tx.correlation_id,
                step_id=step.id,
                status=ExceptionStatus.OPEN,
                classification="retry_budget_exhausted",
                message=f"{STEP}: 2 attempts failed",
                suggested_action="check the target system's health, then replay",
                created_at=now,
            )
        )
    await session.flush()
    return run
