"""Context for people: what Concord's own lineage knows about a subscription."""

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.enums import TxState
from lineage.models import BusinessTransaction


async def subscription_context(
    sessionmaker: async_sessionmaker[AsyncSession], subscription_id: str | None
) -> str:
    """A short summary of a subscription's contract value, invoices and payment failures."""
    if not subscription_id:
        return "The deal names no billing subscription."
    tx = BusinessTransaction
    async with sessionmaker() as session:
        latest = await session.scalar(
            select(tx)
            .where(
                tx.subscription_id == subscription_id,
                tx.workflow.in_(("subscription_activated", "subscription_amended")),
            )
            .order_by(tx.received_at.desc())
            .limit(1)
        )
        rows = await session.execute(
            select(tx.workflow, func.count())
            .where(
                tx.subscription_id == subscription_id,
                tx.workflow.in_(("invoice_generated", "payment_failed")),
            )
            .group_by(tx.workflow)
        )
        counts = {workflow: int(count) for workflow, count in rows}
        open_exceptions = await session.scalar(
            select(func.count())
            .select_from(tx)
            .where(tx.subscription_id == subscription_id, tx.state == TxState.EXCEPTION)
        )
    value = (
        f"{latest.amount_minor} {latest.currency} a year (minor units)"
        if latest is not None and latest.amount_minor is not None
        else "unknown"
    )
    return (
        f"Subscription {subscription_id}: contract value {value}; "
        f"{counts.get('invoice_generated', 0)} invoices, "
        f"{counts.get('payment_failed', 0)} failed payments, "
        f"{open_exceptions or 0} transactions in the exception queue."
    )
