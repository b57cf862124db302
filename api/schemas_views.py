"""Pydantic output of the read-only views: search, lineage graph, SLA figures."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from api.schemas import ReadModel, TransactionRead
from lineage.enums import System


class SearchHitRead(BaseModel):
    transaction: TransactionRead
    # How the query matched, e.g. "invoice_id", "event_id", "external_ref:erp:invoice".
    matched_by: list[str]


class SearchResults(BaseModel):
    query: str
    items: list[SearchHitRead]


class NodeRead(ReadModel):
    id: str
    kind: Literal["event", "transaction", "run", "step", "record"]
    system: System
    label: str
    state: str | None
    at: datetime | None
    detail: dict[str, Any]


class EdgeRead(ReadModel):
    source: str
    target: str
    kind: Literal["emitted", "started", "ran", "executed", "created", "found"]
    at: datetime | None


class LineageGraphRead(BaseModel):
    correlation_id: str
    nodes: list[NodeRead]
    edges: list[EdgeRead]
    # Other transactions of the same subscription or invoice, in business order.
    related: list[TransactionRead]


class SlaFiguresRead(ReadModel):
    group: str
    sla_target_s: float | None
    total: int
    posted: int
    met: int
    breached: int
    overdue: int
    open_exceptions: int
    attainment_pct: float | None
    p50_s: float | None
    p95_s: float | None
    p99_s: float | None
    throughput_per_hour: float
    # Amounts in minor units per ISO 4217 currency.
    money_at_risk: dict[str, int]


class SlaSummary(BaseModel):
    window: str
    group_by: Literal["workflow", "target"]
    since: datetime
    until: datetime
    groups: list[SlaFiguresRead]


class SlaBucket(BaseModel):
    start: datetime
    figures: SlaFiguresRead


class SlaTimeseries(BaseModel):
    window: str
    bucket: str
    workflow: str | None
    since: datetime
    until: datetime
    buckets: list[SlaBucket]
