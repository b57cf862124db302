"""Find transactions by any identifier: correlation, event, business key or external ID.

Each branch is an equality match on an indexed column (the primary key, the business-key
indexes, ix_external_ref_external_id, ix_inbox_event_source_event_id), so a search stays an
index lookup on large tables.
"""

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lineage.models import BusinessTransaction, ExternalRef, InboxEvent


@dataclass(slots=True)
class SearchHit:
    transaction: BusinessTransaction
    # How the query matched: "correlation_id", "event_id", "customer_id", "external_ref:erp", ...
    matched_by: list[str] = field(default_factory=list)


async def search(session: AsyncSession, q: str, *, limit: int) -> list[SearchHit]:
    """Transactions whose identifiers equal `q`, newest first."""
    matches: dict[str, set[str]] = {}

    def add(correlation_id: str, how: str) -> None:
        matches.setdefault(correlation_id, set()).add(how)

    tx = BusinessTransaction
    if await session.scalar(select(tx.correlation_id).where(tx.correlation_id == q)):
        add(q, "correlation_id")
    for column in (tx.customer_id, tx.subscription_id, tx.invoice_id):
        for cid in await session.scalars(select(tx.correlation_id).where(column == q)):
            add(cid, column.key)
    for cid in await session.scalars(
        select(InboxEvent.correlation_id).where(InboxEvent.source_event_id == q)
    ):
        add(cid, "event_id")
    for cid, system, object_type in await session.execute(
        select(ExternalRef.correlation_id, ExternalRef.system, ExternalRef.object_type).where(
            ExternalRef.external_id == q
        )
    ):
        add(cid, f"external_ref:{system}:{object_type}")
    if not matches:
        return []
    rows = await session.scalars(
        select(tx)
        .where(tx.correlation_id.in_(list(matches)))
        .order_by(tx.received_at.desc(), tx.correlation_id.desc())
        .limit(limit)
    )
    return [SearchHit(row, sorted(matches[row.correlation_id])) for row in rows]
