import re
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage import inbox, runs
from lineage.enums import System
from lineage.inbox import IncomingEvent
from lineage.models import BusinessTransaction, InboxEvent
from orchestrator.client.canonical import Invoice


async def inbox_counts(sessionmaker: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    """(events, transactions) stored."""
    async with sessionmaker() as session:
        events = await session.scalar(select(func.count()).select_from(InboxEvent))
        txs = await session.scalar(select(func.count()).select_from(BusinessTransaction))
    return int(events or 0), int(txs or 0)


async def _read_nothing(_session: AsyncSession, _claimed: runs.Claim) -> None:
    return None


async def take_lease(
    sessionmaker: async_sessionmaker[AsyncSession],
    correlation_id: str,
    owner: str,
    now: datetime,
    lease: timedelta = timedelta(seconds=60),
) -> runs.Claim | None:
    """Claim as a worker does (runs.take), reading nothing more."""
    taken = await runs.take(
        sessionmaker,
        correlation_id,
        owner=owner,
        lease_until=now + lease,
        now=now,
        then=_read_nothing,
    )
    return None if taken is None else taken[0]


async def invoice_transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
    invoice_id: str,
    *,
    ordering_key: str | None = None,
) -> str:
    """Store a finalized invoice's event as the intake would; returns its correlation ID."""
    invoice = Invoice(invoice_id=invoice_id, customer_id="cus_1", amount_minor=1000, currency="USD")
    async with sessionmaker.begin() as session:
        result = await inbox.record_event(
            session,
            IncomingEvent(
                source="test",
                source_event_id=f"evt_{invoice_id}",
                event_type="invoice.finalized",
                source_system=System.BILLING,
                payload={"id": f"evt_{invoice_id}"},
                workflow="invoice_generated",
                canonical=invoice.model_dump(mode="json"),
                invoice_id=invoice_id,
                ordering_key=ordering_key,
            ),
        )
    return result.correlation_id


def statement_shape(statement: str) -> str:
    """A SQL statement as its verb and the table it writes or first reads: "INSERT inbox_event"."""
    table = re.search(r"\b(?:INTO|FROM|UPDATE)\s+(\w+)", statement, re.IGNORECASE)
    assert table is not None, statement
    return f"{statement.split()[0].upper()} {table.group(1)}"
