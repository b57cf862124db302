"""Usage aggregation: each closed period's usage becomes one summary transaction, once.

A period (a UTC calendar month) is closed once its end plus a grace period has passed; late
events that arrive within the grace are counted in the period's summary. Usage that arrives
after its period was summarised is never dropped: the next run counts it into an adjustment
(sequence 1, 2, ...), its own transaction and ERP posting, shown as
`com.concord.usage.adjusted` so people see that late usage changed a closed period.
"""

import calendar
import logging
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage import usage
from lineage.clock import new_correlation_id, utc_now
from lineage.enums import EventStatus, System, TxState
from lineage.inbox import payload_digest
from lineage.models import BusinessTransaction, ExternalRef, InboxEvent
from lineage.usage import UsageGroup
from orchestrator.client.canonical import Workflow
from orchestrator.client.usage import UsageLine, UsageSummary
from orchestrator.connectors.errors import Terminal
from orchestrator.connectors.ports import JournalEntryRecord, JournalLine

log = logging.getLogger(__name__)

# The summary is recorded as Concord's own event, so its unique (source, event id) key makes a
# second summary of the same usage impossible, and search finds it by its external ID.
SUMMARY_SOURCE = "concord/usage"
SUMMARISED = "com.concord.usage.summarised"
ADJUSTED = "com.concord.usage.adjusted"


class _NothingLeft(Exception):
    """Another run took the group's rows first; roll back the transaction made for them."""


def first_open_period(now: datetime, *, grace: timedelta) -> str:
    """The earliest period (YYYY-MM) that may still receive usage; earlier ones are closed."""
    return (now - grace).astimezone(UTC).strftime("%Y-%m")


async def summarise_closed_periods(
    sessionmaker: async_sessionmaker[AsyncSession], *, now: datetime, grace: timedelta
) -> list[str]:
    """Create a summary for every closed group with uncounted usage; returns their IDs.

    Safe to run twice or concurrently: a group's rows are claimed by one conditional UPDATE,
    and the summary's event key is unique, so the loser rolls back and creates nothing.
    """
    before = first_open_period(now, grace=grace)
    async with sessionmaker() as session:
        groups = await usage.open_groups(session, before_period=before)
    created: list[str] = []
    for group in groups:
        try:
            created.append(await _summarise(sessionmaker, group))
        except (_NothingLeft, IntegrityError):
            log.info(
                "usage of %s in %s (%s) was summarised by another run",
                group.subscription_id,
                group.period,
                group.currency,
            )
    return created


async def _summarise(sessionmaker: async_sessionmaker[AsyncSession], group: UsageGroup) -> str:
    correlation_id = new_correlation_id()
    now = utc_now()
    async with sessionmaker.begin() as session:
        # Written first: the claim's foreign key points at it, and on SQLite a write first
        # takes the database lock before anything is read, so the claim sees every commit.
        tx = BusinessTransaction(
            correlation_id=correlation_id,
            workflow=Workflow.USAGE_SUMMARY.value,
            state=TxState.RECEIVED,
            source_system=System.CONCORD,
            event_type=SUMMARISED,
            subscription_id=group.subscription_id,
            currency=group.currency,
            period=group.period,
            received_at=now,
            updated_at=now,
        )
        session.add(tx)
        await session.flush()
        if await usage.claim_group(session, group, correlation_id=correlation_id) == 0:
            raise _NothingLeft
        totals, customer_id, latest = await usage.claimed_totals(session, correlation_id)
        sequence = await usage.earlier_summaries(session, group, excluding=correlation_id)
        summary = UsageSummary(
            subscription_id=group.subscription_id,
            customer_id=customer_id,
            period=group.period,
            currency=group.currency,
            sequence=sequence,
            lines=[
                UsageLine(
                    metric=t.metric,
                    quantity=t.quantity,
                    amount_minor=t.amount_minor,
                    events=t.events,
                )
                for t in totals
            ],
        )
        canonical = summary.model_dump(mode="json")
        tx.canonical = canonical
        tx.customer_id = customer_id
        tx.amount_minor = summary.amount_minor
        tx.occurred_at = latest
        tx.event_type = ADJUSTED if sequence else SUMMARISED
        _record_refs(session, tx, summary)
        await session.flush()
    if sequence:
        log.warning(
            "late usage: %d events of %s in closed period %s posted as adjustment %d (%s)",
            summary.events,
            group.subscription_id,
            group.period,
            sequence,
            correlation_id,
        )
    return correlation_id


def _record_refs(session: AsyncSession, tx: BusinessTransaction, summary: UsageSummary) -> None:
    now = tx.received_at
    session.add(
        InboxEvent(
            source=SUMMARY_SOURCE,
            source_event_id=summary.external_id,
            event_type=tx.event_type,
            status=EventStatus.ACCEPTED,
            correlation_id=tx.correlation_id,
            payload=tx.canonical,
            payload_sha256=payload_digest(tx.canonical),
            received_at=now,
            last_delivery_at=now,
        )
    )
    for object_type, external_id in (
        ("customer", summary.customer_id),
        ("subscription", summary.subscription_id),
        ("usage_summary", summary.external_id),
    ):
        session.add(
            ExternalRef(
                correlation_id=tx.correlation_id,
                system=System.CONCORD,
                object_type=object_type,
                external_id=external_id,
                created_at=now,
            )
        )


def journal_entry(
    summary: UsageSummary, *, receivable_account: str, revenue_account: str
) -> JournalEntryRecord:
    """The summary as an accrual: unbilled receivable debited, usage revenue credited per metric.

    A journal entry rather than an invoice: billing invoices the usage itself, and an ERP invoice
    that billing never issued would be an orphan to reconciliation. The quantities travel in the
    memos, the amounts in the lines.
    """
    if summary.amount_minor <= 0:
        raise Terminal(
            f"usage summary {summary.external_id} totals {summary.amount_minor}: a journal entry "
            "needs an amount; resolve it by hand if the usage was free"
        )
    year, month = (int(part) for part in summary.period.split("-"))
    last_day = date(year, month, calendar.monthrange(year, month)[1])
    quantities = ", ".join(f"{line.metric}={line.quantity}" for line in summary.lines)
    memo = f"Usage of {summary.subscription_id} ({summary.customer_id}) in {summary.period}"
    if summary.sequence:
        memo += f", late-usage adjustment {summary.sequence}"
    revenue = tuple(
        JournalLine(
            account=revenue_account,
            credit_minor=line.amount_minor,
            memo=f"{line.metric}: {line.quantity} units in {line.events} events",
        )
        for line in summary.lines
        if line.amount_minor > 0
    )
    receivable = JournalLine(
        account=receivable_account,
        debit_minor=summary.amount_minor,
        memo=f"Unbilled usage {summary.external_id}",
    )
    return JournalEntryRecord(
        external_id=summary.external_id,
        currency=summary.currency,
        posted_on=last_day,
        lines=(receivable, *revenue),
        memo=f"{memo}: {quantities} ({summary.events} events)",
    )
