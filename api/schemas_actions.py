"""Pydantic I/O of the control plane's actions: replay, resolve, assign, bulk, keys, audit.

Every input model forbids unknown fields, so a misspelt option is refused, never ignored.
"""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from api.schemas import INT64_MAX, ReadModel, TransactionRead
from lineage.bulk_states import BulkItemOutcome, BulkState
from lineage.enums import ErrorClass, ExceptionStatus, Role, System, TxState

# Whitespace alone is not a reason.
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]
Amount = Annotated[int, Field(ge=-INT64_MAX, le=INT64_MAX)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class InputModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        # PostgreSQL text and JSONB cannot hold U+0000: refuse it here rather than fail later.
        if _has_nul(data):
            raise ValueError("NUL characters are not accepted")
        return data


class ReplayCreate(InputModel):
    reason: Reason
    from_step: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    # An edited canonical input for this run; the stored original is never changed.
    payload: dict[str, Any] | None = None
    # Post a second copy on purpose (admin only). Refused for now: see the route.
    force_new_posting: bool = False


class HeldRecordRead(ReadModel):
    system: System
    object_type: str
    external_id: str


class DiffOp(BaseModel):
    op: Literal["add", "remove", "replace"]
    path: str  # a JSON Pointer (RFC 6901) into the canonical input
    old: Any = None
    new: Any = None


class ReplayRead(BaseModel):
    correlation_id: str
    run_number: int
    state: TxState
    from_step: str | None
    # Lineage already shows the target holding the record: the replay will find it, not re-post.
    target_holds_record: bool
    target_records: list[HeldRecordRead]
    payload_edited: bool
    payload_diff: list[DiffOp]


class ResolveCreate(InputModel):
    resolution: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)
    ]
    note: Reason


class ResolveRead(BaseModel):
    correlation_id: str
    state: TxState
    resolution: str
    note: str
    resolved_by: str
    resolved_at: datetime
    closed_exceptions: list[int]


class ExceptionQueueItem(BaseModel):
    id: int
    correlation_id: str
    workflow: str | None
    transaction_state: TxState
    status: ExceptionStatus
    classification: str
    error_class: ErrorClass | None
    message: str
    suggested_action: str | None
    owner: str | None
    created_at: datetime
    age_s: float
    amount_minor: int | None
    currency: str | None
    resolved_at: datetime | None
    resolved_by: str | None


class AssignCreate(InputModel):
    # null hands the exception back to the queue.
    owner: Name | None


class TransactionFilterIn(InputModel):
    """The filters of GET /v1/transactions, as a body."""

    state: list[TxState] = Field(default_factory=list, max_length=len(TxState))
    workflow: Annotated[str, StringConstraints(max_length=64)] | None = None
    source: System | None = None
    target: System | None = None
    since: datetime | None = None
    until: datetime | None = None
    business_key: Annotated[str, StringConstraints(max_length=255)] | None = None
    min_amount_minor: Amount | None = None
    max_amount_minor: Amount | None = None
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{3}$")] | None = None
    # Only transactions last changed before this moment: pinned at a dry run, it keeps those
    # that fail while the operator confirms out of the set, so the count still matches.
    updated_until: datetime | None = None


class BulkReplayCreate(InputModel):
    filter: TransactionFilterIn = Field(default_factory=TransactionFilterIn)
    dry_run: bool = False
    # Required unless dry_run: the count the dry run returned, so the set cannot silently change.
    expected_count: int | None = Field(default=None, ge=0, le=INT64_MAX)
    reason: Reason | None = None
    name: Name | None = None


class BulkReplayPreview(BaseModel):
    dry_run: Literal[True] = True
    # The filter counted, `updated_until` set to the dry run's moment unless it was given: sent
    # back with `expected_count`, it keeps transactions that fail meanwhile out of the set.
    filter: TransactionFilterIn
    count: int
    max_allowed: int
    already_held: int
    sample: list[TransactionRead]


class BulkReplayItemRead(ReadModel):
    correlation_id: str
    outcome: BulkItemOutcome
    run_number: int | None
    message: str | None
    updated_at: datetime | None


class BulkReplayRead(ReadModel):
    id: int
    name: str
    state: BulkState
    requested_by: str
    reason: str
    filter: dict[str, Any]
    expected_count: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancelled_by: str | None
    progress: dict[BulkItemOutcome, int] = Field(default_factory=dict)
    done: int = 0


class BulkReplayDetail(BulkReplayRead):
    items: list[BulkReplayItemRead]


class ApiKeyCreate(InputModel):
    name: Name
    role: Role


class ApiKeyRead(ReadModel):
    id: int
    name: str
    role: Role
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    # Shown once: only its hash is stored.
    key: str


class AuditRead(ReadModel):
    id: int
    at: datetime
    actor: str
    role: str | None
    action: str
    target: str | None
    reason: str | None
    outcome: str
    detail: dict[str, Any] | None
    before_state: dict[str, Any] | None
    after_state: dict[str, Any] | None
