"""Find transactions by any identifier: correlation, event, business key or external ID.

Each branch is an equality match on an indexed column (the primary key, the business-key
indexes, ix_external_ref_external_id, ix_inbox_event_source_event_id), so a search stays an
index lookup on large tables.
"""

from dataclasses import dataclass, field

from sqlalchemy import CompoundSelect, literal, null, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from lineage.enums import System
from lineage.models import BusinessTransaction, ExternalRef, InboxEvent

_EXTERNAL_REF = "external_ref"


@dataclass(slots=True)
class SearchHit:
    transaction: BusinessTransaction
    # How the query matched: "correlation_id", "event_id", "customer_id", "external_ref:erp:invoice", ...
    matched_by: list[str] = field(default_factory=list)


async def search(session: AsyncSession, q: str, *, limit: int) -> list[SearchHit]:
    """Transactions whose identifiers equal `q`, newest first.

    Two statements: every kind of match in one UNION ALL (each branch its own index lookup),
    then the matching transactions; each statement is a round trip, and those are the cost.
    """
    tx = BusinessTransaction
    # (correlation ID, how it matched, and for an external reference its system and type).
    # The external references come first: a UNION's column types are those of its first branch.
    branches: CompoundSelect[str, str, System | None, str | None] = union_all(
        select(
            ExternalRef.correlation_id,
            literal(_EXTERNAL_REF),
            ExternalRef.system,
            ExternalRef.object_type,
        ).where(ExternalRef.external_id == q),
        select(tx.correlation_id, literal("correlation_id"), null(), null()).where(
            tx.correlation_id == q
        ),
        *(
            select(tx.correlation_id, literal(column.key), null(), null()).where(column == q)
            for column in (tx.customer_id, tx.subscription_id, tx.invoice_id)
        ),
        select(InboxEvent.correlation_id, literal("event_id"), null(), null()).where(
            InboxEvent.source_event_id == q
        ),
    )
    matches: dict[str, set[str]] = {}
    for cid, how, system, object_type in await session.execute(branches):
        if how == _EXTERNAL_REF:
            how = f"{_EXTERNAL_REF}:{system}:{object_type}"
        matches.setdefault(cid, set()).add(how)
    if not matches:
        return []
    rows = await session.scalars(
        select(tx)
        .where(tx.correlation_id.in_(list(matches)))
        .order_by(tx.received_at.desc(), tx.correlation_id.desc())
        .limit(limit)
    )
    return [SearchHit(row, sorted(matches[row.correlation_id])) for row in rows]
