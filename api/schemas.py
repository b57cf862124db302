"""Pydantic I/O of the public API."""

from datetime import datetime
from typing import Any, Generic, TypeVar

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


class TransactionDetail(TransactionRead):
    event: EventRead | None
    runs: list[RunRead]
    external_refs: list[ExternalRefRead]
    exceptions: list[ExceptionRead]


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
