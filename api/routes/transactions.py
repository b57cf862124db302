from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, Depends, Query
from fastapi.responses import StreamingResponse

from api import csv_export, replay
from api.deps import SessionDep, StateDep, ViewerDep, mutation
from api.errors import MUTATING, error_responses
from api.read_session import ReadSessionDep
from api.schemas import (
    INT64_MAX,
    AttemptRead,
    CanonicalRead,
    EventDetail,
    EventRead,
    ExceptionRead,
    ExternalRefRead,
    Page,
    RunRead,
    StepRead,
    TransactionDetail,
    TransactionRead,
    WaitRead,
)
from api.schemas_actions import ReplayCreate, ReplayRead, ResolveCreate, ResolveRead
from lineage import queries
from lineage.apikeys import Principal
from lineage.enums import Role, System, TxState
from lineage.models import BusinessTransaction, InboxEvent
from orchestrator.client.queue import try_enqueue_wakeup

router = APIRouter(
    prefix="/v1/transactions", tags=["transactions"], responses=error_responses(400, 401, 403, 422)
)


@router.get(
    "",
    response_model=Page[TransactionRead],
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def list_transactions(
    session: SessionDep,
    state_dep: StateDep,
    _principal: ViewerDep,
    state: Annotated[list[TxState] | None, Query()] = None,
    workflow: Annotated[str | None, Query(max_length=64)] = None,
    source: Annotated[System | None, Query(description="The source system")] = None,
    target: Annotated[System | None, Query(description="A target system of its steps")] = None,
    since: Annotated[datetime | None, Query(description="Received at or after (ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(description="Received before (ISO 8601)")] = None,
    business_key: Annotated[
        str | None, Query(max_length=255, description="A customer, subscription or invoice ID")
    ] = None,
    min_amount_minor: Annotated[int | None, Query(ge=-INT64_MAX, le=INT64_MAX)] = None,
    max_amount_minor: Annotated[int | None, Query(ge=-INT64_MAX, le=INT64_MAX)] = None,
    currency: Annotated[str | None, Query(pattern=r"^[A-Za-z]{3}$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    fmt: Annotated[
        Literal["json", "csv"],
        Query(alias="format", description="csv streams every matching row, ignoring paging"),
    ] = "json",
) -> Page[TransactionRead] | StreamingResponse:
    """Transactions, newest first, with keyset pagination (or all of them as CSV)."""
    flt = queries.TransactionFilter(
        states=tuple(state or ()),
        workflow=workflow,
        source_system=source,
        target_system=target,
        since=since,
        until=until,
        business_key=business_key,
        min_amount_minor=min_amount_minor,
        max_amount_minor=max_amount_minor,
        currency=currency,
    )
    if fmt == "csv":
        return StreamingResponse(
            csv_export.transaction_rows(state_dep["sessionmaker"], flt),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="transactions.csv"'},
        )
    rows, next_cursor = await queries.list_transactions(session, flt, limit=limit, cursor=cursor)
    return Page[TransactionRead](
        items=[TransactionRead.model_validate(row) for row in rows], next_cursor=next_cursor
    )


# Roles that may replay, and so see the workflow input a replay edit starts from.
CANONICAL_ROLES = frozenset({Role.OPS, Role.ADMIN})


def _event(event: InboxEvent | None, principal: Principal) -> EventDetail | EventRead | None:
    if event is None:
        return None
    base = EventRead.model_validate(event)
    # Raw payloads are for admins only (DESIGN: roles); other roles get no payload field at all.
    if principal.role is Role.ADMIN:
        return EventDetail(**base.model_dump(), payload=event.payload)
    return base


def _canonical(lineage: queries.TransactionLineage, principal: Principal) -> CanonicalRead | None:
    if principal.role not in CANONICAL_ROLES:
        return None
    original = lineage.transaction.canonical
    latest = lineage.runs[-1].run if lineage.runs else None
    override = latest.input_override if latest is not None else None
    return CanonicalRead(
        input=original,
        latest_run=latest.number if latest is not None else None,
        latest_run_override=override,
        effective=override if override is not None else original,
    )


@router.get("/{correlation_id}", responses=error_responses(404))
async def get_transaction(
    correlation_id: str, session: ReadSessionDep, principal: ViewerDep
) -> TransactionDetail:
    """One transaction with every run, step and attempt, its external references and exceptions.

    Ops and admins also get `canonical`, the workflow input a replay edit starts from; admins
    also get the event's raw `payload`. Both are null for every other role.
    """
    lineage = await queries.transaction_lineage(session, correlation_id)
    base = TransactionRead.model_validate(lineage.transaction)
    return TransactionDetail(
        **base.model_dump(),
        event=_event(lineage.event, principal),
        runs=[
            RunRead(
                **_fields(RunRead, run.run),
                steps=[
                    StepRead(
                        **_fields(StepRead, step.step),
                        attempts=[AttemptRead.model_validate(a) for a in step.attempts],
                    )
                    for step in run.steps
                ],
            )
            for run in lineage.runs
        ],
        external_refs=[ExternalRefRead.model_validate(r) for r in lineage.external_refs],
        exceptions=[ExceptionRead.model_validate(e) for e in lineage.exceptions],
        canonical=_canonical(lineage, principal),
        waiting=waiting(lineage.transaction),
    )


def waiting(tx: BusinessTransaction) -> WaitRead | None:
    """Explain a wait from the state and the reason the engine recorded with it."""
    reason = tx.state_reason or ""
    if tx.state is TxState.RECEIVED:
        return WaitRead(kind="queued", reason="stored; waiting for a worker to pick it up")
    if tx.state is TxState.PENDING and reason.startswith("waiting for"):
        return WaitRead(kind="ordering", reason=reason)
    if tx.state is TxState.PENDING:
        return WaitRead(kind="queued", reason=reason or "waiting for a worker to pick it up")
    if tx.state is TxState.RETRYING:
        kind: Literal["rate_limit", "retry_backoff"] = (
            "rate_limit" if "rate limit" in reason or "rate_limit" in reason else "retry_backoff"
        )
        return WaitRead(kind=kind, reason=reason, next_attempt_at=tx.next_attempt_at)
    return None


def _fields(schema: type[RunRead] | type[StepRead], row: object) -> dict[str, object]:
    nested = {"steps", "attempts"}
    return {name: getattr(row, name) for name in schema.model_fields if name not in nested}


@router.post("/{correlation_id}/replay", status_code=202, responses=MUTATING)
async def replay_transaction(
    correlation_id: str,
    replay_in: ReplayCreate,
    session: SessionDep,
    state: StateDep,
    background: BackgroundTasks,
    principal: Annotated[Principal, Depends(mutation(Role.OPS, action="transaction.replay"))],
) -> ReplayRead:
    """Start a new run of a settled transaction; the same idempotency keys mean no second copy.

    The answer reports whether lineage shows the target already holding the record (the run
    will then find it instead of posting) and, for an edited payload, the diff to the original.
    """
    result = await replay.replay_one(session, correlation_id, replay_in, principal=principal)
    # After the commit (the session dependency commits before the response is sent).
    background.add_task(try_enqueue_wakeup, state["arq"], correlation_id)
    return result


@router.post("/{correlation_id}/resolve", responses=MUTATING)
async def resolve_transaction(
    correlation_id: str,
    resolve_in: ResolveCreate,
    session: SessionDep,
    principal: Annotated[Principal, Depends(mutation(Role.OPS, action="transaction.resolve"))],
) -> ResolveRead:
    """Close a settled transaction by hand; its open exceptions close with it."""
    return await replay.resolve_one(session, correlation_id, resolve_in, principal=principal)
