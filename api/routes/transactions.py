from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import SessionDep, ViewerDep
from api.schemas import (
    AttemptRead,
    EventRead,
    ExceptionRead,
    ExternalRefRead,
    Page,
    RunRead,
    StepRead,
    TransactionDetail,
    TransactionRead,
)
from lineage import queries
from lineage.enums import System, TxState

router = APIRouter(prefix="/v1/transactions", tags=["transactions"])


@router.get("")
async def list_transactions(
    session: SessionDep,
    _principal: ViewerDep,
    state: Annotated[list[TxState] | None, Query()] = None,
    workflow: Annotated[str | None, Query(max_length=64)] = None,
    source: Annotated[System | None, Query(description="The source system")] = None,
    since: Annotated[datetime | None, Query(description="Received at or after (ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(description="Received before (ISO 8601)")] = None,
    business_key: Annotated[
        str | None, Query(max_length=255, description="A customer, subscription or invoice ID")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Page[TransactionRead]:
    """Transactions, newest first, with keyset pagination."""
    flt = queries.TransactionFilter(
        states=tuple(state or ()),
        workflow=workflow,
        source_system=source,
        since=since,
        until=until,
        business_key=business_key,
    )
    rows, next_cursor = await queries.list_transactions(session, flt, limit=limit, cursor=cursor)
    return Page[TransactionRead](
        items=[TransactionRead.model_validate(row) for row in rows], next_cursor=next_cursor
    )


@router.get("/{correlation_id}", responses={404: {"description": "No such transaction."}})
async def get_transaction(
    correlation_id: str, session: SessionDep, _principal: ViewerDep
) -> TransactionDetail:
    """One transaction with every run, step and attempt, its external references and exceptions."""
    lineage = await queries.transaction_lineage(session, correlation_id)
    base = TransactionRead.model_validate(lineage.transaction)
    return TransactionDetail(
        **base.model_dump(),
        event=EventRead.model_validate(lineage.event) if lineage.event else None,
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
    )


def _fields(schema: type[RunRead] | type[StepRead], row: object) -> dict[str, object]:
    nested = {"steps", "attempts"}
    return {name: getattr(row, name) for name in schema.model_fields if name not in nested}
