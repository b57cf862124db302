from enum import StrEnum


class System(StrEnum):
    BILLING = "billing"
    CRM = "crm"
    ERP = "erp"
    PROVISIONING = "provisioning"
    SUPPORT = "support"
    ANALYTICS = "analytics"
    CONCORD = "concord"


class EventStatus(StrEnum):
    ACCEPTED = "accepted"
    IGNORED = "ignored"


class TxState(StrEnum):
    RECEIVED = "received"
    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"
    POSTED = "posted"
    EXCEPTION = "exception"
    MANUALLY_RESOLVED = "manually_resolved"
    REVERSED = "reversed"
    IGNORED = "ignored"


# States a worker still owes work on: the sweeper watches these.
ACTIVE_STATES = frozenset({TxState.RECEIVED, TxState.PENDING, TxState.RUNNING, TxState.RETRYING})


class StepState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED_RETRYABLE = "failed_retryable"
    FAILED_TERMINAL = "failed_terminal"
    SKIPPED = "skipped"
    COMPENSATED = "compensated"


class ErrorClass(StrEnum):
    RETRYABLE = "retryable"
    TERMINAL = "terminal"
    CONFLICT = "conflict"


class AttemptOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    FOUND_EXISTING = "found_existing"


class ExceptionStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class Role(StrEnum):
    VIEWER = "viewer"
    EXECUTIVE = "executive"
    FINANCE = "finance"
    OPS = "ops"
    ADMIN = "admin"
    INGEST = "ingest"


class RunState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
