"""Pydantic I/O of the public API."""

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

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

T = TypeVar("T")

# The databases store ids and amounts as signed 64-bit integers; larger values are refused.
INT64_MAX = 2**63 - 1


class ReadModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    items: list[T]
    # Opaque: pass it back as ?cursor= for the next page; null on the last page.
    next_cursor: str | None


class IntakeResponse(BaseModel):
    correlation_id: str
    status: EventStatus
    duplicate: bool


class TransactionRead(ReadModel):
    correlation_id: str
    workflow: str | None
    state: TxState
    state_reason: str | None
    source_system: System
    event_type: str
    customer_id: str | None
    subscription_id: str | None
    invoice_id: str | None
    amount_minor: int | None
    currency: str | None
    period: str | None
    occurred_at: datetime | None
    received_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    next_attempt_at: datetime | None
    run_count: int


class EventRead(ReadModel):
    id: int
    source: str
    source_event_id: str
    event_type: str
    status: EventStatus
    ignored_reason: str | None
    received_at: datetime
    deliveries: int
    last_delivery_at: datetime


class AttemptRead(ReadModel):
    number: int
    started_at: datetime
    ended_at: datetime | None
    outcome: AttemptOutcome | None
    error_class: ErrorClass | None
    error_message: str | None
    http_status: int | None
    target_ref: str | None


class StepRead(ReadModel):
    name: str
    target_system: System
    state: StepState
    idempotency_key: str
    external_id: str | None
    attempt_count: int
    next_attempt_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    error_class: ErrorClass | None
    error_message: str | None
    # What the step read or decided for later steps (an enrichment's context, a proration's
    # amount and the mappings version it was coded with); None for most steps.
    output: dict[str, Any] | None = None
    attempts: list[AttemptRead]


class RunRead(ReadModel):
    number: int
    trigger: str
    requested_by: str | None
    reason: str | None
    state: RunState
    started_at: datetime
    ended_at: datetime | None
    steps: list[StepRead]


class ExternalRefRead(ReadModel):
    system: System
    object_type: str
    external_id: str
    created_at: datetime


class ExceptionRead(ReadModel):
    id: int
    status: ExceptionStatus
    classification: str
    error_class: ErrorClass | None
    message: str
    suggested_action: str | None
    owner: str | None
    created_at: datetime
    resolved_at: datetime | None
    # Who closed it and why: a person (manual resolution) or "run N" (a replay that posted).
    resolved_by: str | None = None
    resolution_note: str | None = None
    resolved_by_run_id: int | None = None


class EventDetail(EventRead):
    """The event with its raw payload as received: what an admin sees."""

    payload: dict[str, Any]


class CanonicalRead(BaseModel):
    """The workflow input a replay edit starts from (ops and admin only)."""

    # The canonical input mapped once at intake (business_transaction.canonical).
    input: dict[str, Any] | None
    # The latest run, and the edited input it ran with (null when it ran the original).
    latest_run: int | None
    latest_run_override: dict[str, Any] | None
    # What the latest run used: its override, else the original input.
    effective: dict[str, Any] | None


class WaitRead(BaseModel):
    """Why an unfinished transaction is not moving right now."""

    kind: Literal["queued", "ordering", "retry_backoff", "rate_limit"]
    reason: str
    # When a worker will try again; null while it waits on something else.
    next_attempt_at: datetime | None = None


class TransactionDetail(TransactionRead):
    # With the raw payload (EventDetail) for admins only; other roles never get it.
    event: EventDetail | EventRead | None
    runs: list[RunRead]
    external_refs: list[ExternalRefRead]
    exceptions: list[ExceptionRead]
    # Null unless the caller's role is ops or admin.
    canonical: CanonicalRead | None = None
    # Null unless the transaction is waiting (not running, not settled).
    waiting: WaitRead | None = None


class QueueDepthRead(BaseModel):
    name: str
    # ZCARD of the queue: every job in it, including those a worker has already started.
    total: int
    # Due now or earlier (ready to run, or running) and deferred into the future.
    ready: int
    deferred: int
    next_deferred_at: datetime | None


class WorkerHealthRead(BaseModel):
    """One arq health-check line (arq keeps one key per queue: the last worker to write wins)."""

    key: str
    value: str
    # Milliseconds until the key expires; it is rewritten every interval while a worker runs.
    ttl_ms: int | None
    # Seconds since it was written, from the TTL (interval + 1 s when written).
    age_s: float | None
    last_heartbeat_at: datetime | None
    # The counters in the line (j_complete, j_failed, j_retried, j_ongoing, queued).
    counters: dict[str, int]


class WorkersRead(BaseModel):
    health_check_interval_s: int
    reported: list[WorkerHealthRead]
    # "no worker reported" when no health-check key exists.
    note: str | None


class SweeperRunRead(BaseModel):
    at: datetime
    found: int
    queued: int
    # Stale, but with a wake-up waiting its turn in the queue: left to it (0 in older records).
    already_queued: int = 0
    age_s: float


class TargetPressureRead(BaseModel):
    target_system: System
    state: TxState
    # Transactions in this state whose latest step is on this target.
    transactions: int


class OperationsRead(BaseModel):
    checked_at: datetime
    queue: QueueDepthRead
    workers: WorkersRead
    # Null (with a note) until a sweeper has run against this Redis.
    sweeper: SweeperRunRead | None
    sweeper_note: str | None
    by_target: list[TargetPressureRead]


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any]


class ErrorBody(BaseModel):
    """Every error answer: {"error": {"code", "message", "details"}}."""

    error: ErrorDetail
