"""ORM tables of the lineage store: inbox, transactions, runs, steps, attempts, refs, exceptions."""

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lineage.bulk_states import BulkItemOutcome, BulkState
from lineage.clock import utc_now
from lineage.db import BigIntId, UTCDateTime
from lineage.enums import (
    AttemptOutcome,
    ErrorClass,
    EventStatus,
    ExceptionStatus,
    Role,
    RunState,
    StepState,
    System,
    TxState,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JsonDoc = JSON().with_variant(JSONB(), "postgresql")


def _enum(enum_cls: type[Any]) -> SAEnum:
    # Stored as plain strings: adding a state must not need a PostgreSQL type migration.
    return SAEnum(
        enum_cls,
        native_enum=False,
        create_constraint=False,
        length=24,
        values_callable=lambda members: [m.value for m in members],
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {
        datetime: UTCDateTime(),
        TxState: _enum(TxState),
        StepState: _enum(StepState),
        RunState: _enum(RunState),
        System: _enum(System),
        ErrorClass: _enum(ErrorClass),
        EventStatus: _enum(EventStatus),
        ExceptionStatus: _enum(ExceptionStatus),
        AttemptOutcome: _enum(AttemptOutcome),
        Role: _enum(Role),
        BulkState: _enum(BulkState),
        BulkItemOutcome: _enum(BulkItemOutcome),
    }


def table_of(model: type[Base]) -> Table:
    """A model's Core table, for statements built once (``__table__`` is typed a FromClause)."""
    return Base.metadata.tables[model.__tablename__]


class BusinessTransaction(Base):
    __tablename__ = "business_transaction"
    __table_args__ = (
        Index("ix_business_transaction_state_updated", "state", "updated_at"),
        Index("ix_business_transaction_workflow_received", "workflow", "received_at"),
        Index("ix_business_transaction_ordering", "ordering_key", "occurred_at"),
    )

    correlation_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workflow: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[TxState]
    state_reason: Mapped[str | None] = mapped_column(String(500))
    source_system: Mapped[System]
    event_type: Mapped[str] = mapped_column(String(200))
    # The canonical workflow input, mapped once at intake (None for ignored events).
    canonical: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    customer_id: Mapped[str | None] = mapped_column(String(255), index=True)
    subscription_id: Mapped[str | None] = mapped_column(String(255), index=True)
    invoice_id: Mapped[str | None] = mapped_column(String(255), index=True)
    amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    period: Mapped[str | None] = mapped_column(String(7))
    # Events sharing this key (a subscription, an invoice) apply in business order.
    ordering_key: Mapped[str | None] = mapped_column(String(300))
    occurred_at: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, onupdate=utc_now)
    completed_at: Mapped[datetime | None]
    run_count: Mapped[int] = mapped_column(default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]


class InboxEvent(Base):
    __tablename__ = "inbox_event"
    __table_args__ = (UniqueConstraint("source", "source_event_id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(255))
    source_event_id: Mapped[str] = mapped_column(String(255), index=True)
    event_type: Mapped[str] = mapped_column(String(200))
    status: Mapped[EventStatus]
    ignored_reason: Mapped[str | None] = mapped_column(String(500))
    correlation_id: Mapped[str] = mapped_column(
        ForeignKey("business_transaction.correlation_id"), unique=True
    )
    payload: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    payload_sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(default=utc_now)
    deliveries: Mapped[int] = mapped_column(default=1)
    last_delivery_at: Mapped[datetime] = mapped_column(default=utc_now)


class WorkflowRun(Base):
    __tablename__ = "workflow_run"
    __table_args__ = (UniqueConstraint("correlation_id", "number"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    correlation_id: Mapped[str] = mapped_column(
        ForeignKey("business_transaction.correlation_id"), index=True
    )
    number: Mapped[int]
    trigger: Mapped[str] = mapped_column(String(32))
    requested_by: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(String(1000))
    # A replay's edited workflow input; the event's payload itself is never changed.
    input_override: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    from_step: Mapped[str | None] = mapped_column(String(100))
    # An admin's replay that posts a second copy on purpose, under new external IDs.
    force_new_posting: Mapped[bool] = mapped_column(default=False, server_default=false())
    state: Mapped[RunState]
    started_at: Mapped[datetime] = mapped_column(default=utc_now)
    ended_at: Mapped[datetime | None]


class WorkflowStep(Base):
    __tablename__ = "workflow_step"
    __table_args__ = (UniqueConstraint("run_id", "name"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("workflow_run.id"), index=True)
    correlation_id: Mapped[str] = mapped_column(String(36), index=True)
    name: Mapped[str] = mapped_column(String(100))
    target_system: Mapped[System]
    state: Mapped[StepState]
    idempotency_key: Mapped[str] = mapped_column(String(200))
    external_id: Mapped[str | None] = mapped_column(String(255))
    attempt_count: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    error_class: Mapped[ErrorClass | None]
    error_message: Mapped[str | None] = mapped_column(Text)
    # What the step read or decided for later steps of the transaction (enrichment, the
    # mappings version it coded with); None for steps that hand nothing on.
    output: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)


class StepAttempt(Base):
    __tablename__ = "step_attempt"
    __table_args__ = (UniqueConstraint("step_id", "number"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    step_id: Mapped[int] = mapped_column(ForeignKey("workflow_step.id"))
    correlation_id: Mapped[str] = mapped_column(String(36), index=True)
    number: Mapped[int]
    started_at: Mapped[datetime] = mapped_column(default=utc_now)
    ended_at: Mapped[datetime | None]
    outcome: Mapped[AttemptOutcome | None]
    error_class: Mapped[ErrorClass | None]
    error_message: Mapped[str | None] = mapped_column(Text)
    http_status: Mapped[int | None]
    target_ref: Mapped[str | None] = mapped_column(String(255))


class ExternalRef(Base):
    __tablename__ = "external_ref"
    __table_args__ = (
        UniqueConstraint("correlation_id", "system", "object_type", "external_id"),
        Index("ix_external_ref_external_id", "external_id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    correlation_id: Mapped[str] = mapped_column(ForeignKey("business_transaction.correlation_id"))
    system: Mapped[System]
    object_type: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class ExceptionItem(Base):
    __tablename__ = "exception_item"
    __table_args__ = (Index("ix_exception_item_status_created", "status", "created_at"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    correlation_id: Mapped[str] = mapped_column(
        ForeignKey("business_transaction.correlation_id"), index=True
    )
    step_id: Mapped[int | None] = mapped_column(ForeignKey("workflow_step.id"))
    status: Mapped[ExceptionStatus]
    classification: Mapped[str] = mapped_column(String(32))
    error_class: Mapped[ErrorClass | None]
    message: Mapped[str] = mapped_column(Text)
    suggested_action: Mapped[str | None] = mapped_column(String(500))
    owner: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(200))
    resolution_note: Mapped[str | None] = mapped_column(Text)
    # The run whose success closed this exception (a replay), when one did.
    resolved_by_run_id: Mapped[int | None] = mapped_column(ForeignKey("workflow_run.id"))


class UsageRecord(Base):
    """One acknowledged usage event: the inbox row of high-volume usage, which starts no
    transaction of its own; the summary that counted it links it to one."""

    __tablename__ = "usage_record"
    __table_args__ = (
        UniqueConstraint("source", "source_event_id"),
        # The aggregation job's question: which closed periods still have uncounted usage?
        Index("ix_usage_record_open", "summary_correlation_id", "period"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(255))
    source_event_id: Mapped[str] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    payload_sha256: Mapped[str] = mapped_column(String(64))
    subscription_id: Mapped[str] = mapped_column(String(255), index=True)
    customer_id: Mapped[str] = mapped_column(String(255))
    metric: Mapped[str] = mapped_column(String(100))
    quantity: Mapped[int] = mapped_column(BigInteger)
    unit_amount_minor: Mapped[int] = mapped_column(BigInteger)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    period: Mapped[str] = mapped_column(String(7))
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utc_now)
    deliveries: Mapped[int] = mapped_column(default=1)
    last_delivery_at: Mapped[datetime] = mapped_column(default=utc_now)
    summary_correlation_id: Mapped[str | None] = mapped_column(
        ForeignKey("business_transaction.correlation_id")
    )


class ApiKey(Base):
    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role]
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class AuditLog(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    role: Mapped[str | None] = mapped_column(String(24))
    action: Mapped[str] = mapped_column(String(100))
    target: Mapped[str | None] = mapped_column(String(500))
    reason: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    # The target's state before and after the action, as the actor changed it.
    before_state: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    after_state: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)


class BulkReplay(Base):
    """A named bulk replay job: its filter, who asked and why; items hold the per-row outcome."""

    __tablename__ = "bulk_replay"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    state: Mapped[BulkState]
    requested_by: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(24))
    reason: Mapped[str] = mapped_column(Text)
    filter: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    expected_count: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    cancelled_by: Mapped[str | None] = mapped_column(String(200))
    # The API process running the job renews this; an expired lease lets another one resume it.
    lease_expires_at: Mapped[datetime | None]


class BulkReplayItem(Base):
    __tablename__ = "bulk_replay_item"
    __table_args__ = (UniqueConstraint("bulk_replay_id", "correlation_id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    bulk_replay_id: Mapped[int] = mapped_column(ForeignKey("bulk_replay.id"))
    correlation_id: Mapped[str] = mapped_column(
        ForeignKey("business_transaction.correlation_id"), index=True
    )
    outcome: Mapped[BulkItemOutcome]
    run_number: Mapped[int | None]
    message: Mapped[str | None] = mapped_column(String(500))
    updated_at: Mapped[datetime | None]


class ReconciliationRun(Base):
    """One reconciliation of a period: its progress, and counts and amounts per mismatch kind."""

    __tablename__ = "reconciliation_run"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    period: Mapped[str] = mapped_column(String(7), index=True)
    # running | succeeded | failed; stage names the step a running run is in.
    state: Mapped[str] = mapped_column(String(24))
    stage: Mapped[str] = mapped_column(String(64))
    # Percent done, 0..100.
    progress: Mapped[int] = mapped_column(default=0)
    trigger: Mapped[str] = mapped_column(String(32))
    requested_by: Mapped[str | None] = mapped_column(String(200))
    tolerance_minor: Mapped[int] = mapped_column(BigInteger)
    # Where this run's snapshots were written as Parquet, to re-examine it offline.
    snapshot_dir: Mapped[str | None] = mapped_column(String(1000))
    input_rows: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    kinds_evaluated: Mapped[list[str] | None] = mapped_column(JsonDoc)
    # {kind: {"count": n, "amount_minor": {currency: total}}} of what this run found.
    summary: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    found_count: Mapped[int] = mapped_column(default=0)
    new_count: Mapped[int] = mapped_column(default=0)
    auto_resolved_count: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    finished_at: Mapped[datetime | None]
    # Written every few seconds while the run works: a running run whose beat stopped belongs
    # to a process that died, and no longer blocks its period.
    heartbeat_at: Mapped[datetime | None]


class Mismatch(Base):
    """A difference between systems, the same row every time a run finds it again."""

    __tablename__ = "mismatch"
    __table_args__ = (
        Index("ix_mismatch_status_kind", "status", "kind"),
        Index("ix_mismatch_period_status", "period", "status"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    # sha256 of kind and the external ids the difference is about (reconciliation/sql).
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    # open | resolved (by a person) | auto_resolved (a later run no longer found it)
    status: Mapped[str] = mapped_column(String(24))
    period: Mapped[str | None] = mapped_column(String(7))
    system: Mapped[str] = mapped_column(String(24))
    match_key: Mapped[str] = mapped_column(String(600))
    source_system: Mapped[str | None] = mapped_column(String(24))
    source_id: Mapped[str | None] = mapped_column(String(255))
    source_amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    source_currency: Mapped[str | None] = mapped_column(String(3))
    source_status: Mapped[str | None] = mapped_column(String(40))
    target_system: Mapped[str | None] = mapped_column(String(24))
    target_id: Mapped[str | None] = mapped_column(String(1000))
    target_amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    target_currency: Mapped[str | None] = mapped_column(String(3))
    target_status: Mapped[str | None] = mapped_column(String(40))
    amount_at_risk_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    # The first transaction it links to (indexed for lineage look-ups), then all of them.
    correlation_id: Mapped[str | None] = mapped_column(String(36), index=True)
    correlation_ids: Mapped[list[str]] = mapped_column(JsonDoc)
    # [{"system", "object_type", "external_id"}]: every record the difference is about.
    refs: Mapped[list[dict[str, Any]]] = mapped_column(JsonDoc)
    first_run_id: Mapped[int] = mapped_column(ForeignKey("reconciliation_run.id"))
    last_run_id: Mapped[int] = mapped_column(ForeignKey("reconciliation_run.id"))
    first_seen_at: Mapped[datetime] = mapped_column(default=utc_now)
    last_seen_at: Mapped[datetime] = mapped_column(default=utc_now)
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(200))
    resolution_note: Mapped[str | None] = mapped_column(Text)
    # The run that no longer found it, when it was auto-resolved.
    resolved_run_id: Mapped[int | None] = mapped_column(ForeignKey("reconciliation_run.id"))
    # The last replay started from it (POST /v1/mismatches/{id}/replay): when, by whom, and the
    # runs it opened, [{"correlation_id", "run_number"}]; a later run then shows whether it fixed it.
    last_replay_at: Mapped[datetime | None]
    last_replay_by: Mapped[str | None] = mapped_column(String(200))
    last_replay_runs: Mapped[list[dict[str, Any]] | None] = mapped_column(JsonDoc)
