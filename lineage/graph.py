"""A transaction's lineage as a graph a client can draw: who caused what, where, and when."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from lineage.enums import AttemptOutcome, System
from lineage.models import BusinessTransaction
from lineage.queries import TransactionLineage, transaction_lineage


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    kind: str  # event | transaction | run | step | record
    system: System
    label: str
    state: str | None = None
    at: datetime | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    kind: str  # emitted | started | ran | executed | created | found
    at: datetime | None = None


@dataclass(slots=True)
class Graph:
    nodes: list[Node]
    edges: list[Edge]
    # Other transactions of the same subscription or invoice, in business order.
    related: list[BusinessTransaction]


def _record_id(system: str, object_type: str, external_id: str) -> str:
    return f"record:{system}:{object_type}:{external_id}"


def _source_side(lin: TransactionLineage, nodes: dict[str, Node], edges: list[Edge]) -> str:
    tx = lin.transaction
    tx_id = f"transaction:{tx.correlation_id}"
    nodes[tx_id] = Node(
        tx_id,
        "transaction",
        System.CONCORD,
        tx.correlation_id,
        tx.state,
        tx.received_at,
        {"workflow": tx.workflow, "event_type": tx.event_type, "completed_at": tx.completed_at},
    )
    event = lin.event
    event_id = f"event:{event.id}" if event else None
    if event is not None and event_id is not None:
        nodes[event_id] = Node(
            event_id,
            "event",
            tx.source_system,
            event.source_event_id,
            event.status,
            event.received_at,
            {"source": event.source, "event_type": event.event_type},
        )
        edges.append(Edge(event_id, tx_id, "started", event.received_at))
    for ref in lin.external_refs:
        if ref.system != tx.source_system:
            continue
        ref_id = _record_id(ref.system, ref.object_type, ref.external_id)
        nodes[ref_id] = Node(
            ref_id,
            "record",
            ref.system,
            ref.external_id,
            None,
            ref.created_at,
            {"object_type": ref.object_type},
        )
        # The source object caused the event (or the transaction directly, if no event is kept).
        edges.append(Edge(ref_id, event_id or tx_id, "emitted", tx.occurred_at or ref.created_at))
    return tx_id


def build_graph(lin: TransactionLineage, related: list[BusinessTransaction]) -> Graph:
    nodes: dict[str, Node] = {}
    edges: list[Edge] = []
    tx_id = _source_side(lin, nodes, edges)
    target_refs = {
        (ref.system, ref.external_id): ref
        for ref in lin.external_refs
        if ref.system != lin.transaction.source_system
    }
    for run in lin.runs:
        r = run.run
        run_id = f"run:{r.number}"
        nodes[run_id] = Node(
            run_id,
            "run",
            System.CONCORD,
            f"run {r.number} ({r.trigger})",
            r.state,
            r.started_at,
            {
                "requested_by": r.requested_by,
                "reason": r.reason,
                "ended_at": r.ended_at,
                "from_step": r.from_step,
            },
        )
        edges.append(Edge(tx_id, run_id, "ran", r.started_at))
        for sw in run.steps:
            s = sw.step
            step_id = f"step:{s.id}"
            nodes[step_id] = Node(
                step_id,
                "step",
                s.target_system,
                s.name,
                s.state,
                s.started_at,
                {
                    "attempts": s.attempt_count,
                    "idempotency_key": s.idempotency_key,
                    "ended_at": s.ended_at,
                    "error_class": s.error_class,
                },
            )
            edges.append(Edge(run_id, step_id, "executed", s.started_at))
            for attempt in sw.attempts:
                if attempt.target_ref is None or attempt.outcome not in (
                    AttemptOutcome.SUCCEEDED,
                    AttemptOutcome.FOUND_EXISTING,
                ):
                    continue
                ref = target_refs.get((s.target_system, attempt.target_ref))
                object_type = ref.object_type if ref else "record"
                ref_id = _record_id(s.target_system, object_type, attempt.target_ref)
                nodes.setdefault(
                    ref_id,
                    Node(
                        ref_id,
                        "record",
                        s.target_system,
                        attempt.target_ref,
                        None,
                        ref.created_at if ref else attempt.ended_at,
                        {"object_type": object_type},
                    ),
                )
                kind = "found" if attempt.outcome is AttemptOutcome.FOUND_EXISTING else "created"
                edges.append(Edge(step_id, ref_id, kind, attempt.ended_at))
    return Graph(list(nodes.values()), edges, related)


async def related_transactions(
    session: AsyncSession, tx: BusinessTransaction, *, limit: int = 100
) -> list[BusinessTransaction]:
    """Transactions sharing the subscription or invoice, in business order (occurred, received)."""
    keys = []
    if tx.subscription_id:
        keys.append(BusinessTransaction.subscription_id == tx.subscription_id)
    if tx.invoice_id:
        keys.append(BusinessTransaction.invoice_id == tx.invoice_id)
    if not keys:
        return []
    rows = list(
        await session.scalars(
            select(BusinessTransaction)
            .where(or_(*keys), BusinessTransaction.correlation_id != tx.correlation_id)
            .order_by(BusinessTransaction.received_at, BusinessTransaction.correlation_id)
            .limit(limit)
        )
    )
    # Business time first; the database's NULL ordering differs between backends, Python's doesn't.
    rows.sort(key=lambda t: (t.occurred_at is None, t.occurred_at or t.received_at, t.received_at))
    return rows


async def lineage_graph(session: AsyncSession, correlation_id: str) -> Graph:
    lin = await transaction_lineage(session, correlation_id)
    return build_graph(lin, await related_transactions(session, lin.transaction))
