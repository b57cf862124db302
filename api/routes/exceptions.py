from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from api import audit_trail
from api.deps import SessionDep, ViewerDep, mutation
from api.errors import error_responses
from api.schemas import INT64_MAX, Page
from api.schemas_actions import AssignCreate, ExceptionQueueItem
from lineage import exceptions_queue as queue
from lineage.apikeys import Principal
from lineage.clock import utc_now
from lineage.enums import ExceptionStatus, Role
from lineage.models import BusinessTransaction, ExceptionItem

router = APIRouter(
    prefix="/v1/exceptions", tags=["exceptions"], responses=error_responses(400, 401, 403, 422)
)


def _item(item: ExceptionItem, tx: BusinessTransaction) -> ExceptionQueueItem:
    end = item.resolved_at or utc_now()
    return ExceptionQueueItem(
        id=item.id,
        correlation_id=item.correlation_id,
        workflow=tx.workflow,
        transaction_state=tx.state,
        status=item.status,
        classification=item.classification,
        error_class=item.error_class,
        message=item.message,
        suggested_action=item.suggested_action,
        owner=item.owner,
        created_at=item.created_at,
        age_s=round((end - item.created_at).total_seconds(), 3),
        amount_minor=tx.amount_minor,
        currency=tx.currency,
        resolved_at=item.resolved_at,
        resolved_by=item.resolved_by,
    )


@router.get("")
async def list_exceptions(
    session: SessionDep,
    _principal: ViewerDep,
    status: Annotated[
        ExceptionStatus | None, Query(description="Default: the open queue")
    ] = ExceptionStatus.OPEN,
    classification: Annotated[
        str | None,
        Query(
            max_length=32, description="e.g. retry_budget_exhausted, validation, mapping_missing"
        ),
    ] = None,
    workflow: Annotated[str | None, Query(max_length=64)] = None,
    owner: Annotated[str | None, Query(max_length=200)] = None,
    unassigned: Annotated[bool, Query(description="Only exceptions nobody owns")] = False,
    sort: Annotated[queue.ExceptionSort, Query(description="By age")] = queue.ExceptionSort.OLDEST,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Page[ExceptionQueueItem]:
    """The exception queue: classification, age, owner and the suggested next action."""
    flt = queue.ExceptionFilter(
        status=status,
        classification=classification,
        workflow=workflow,
        owner=owner,
        unassigned=unassigned,
    )
    rows, next_cursor = await queue.list_exceptions(
        session, flt, sort=sort, limit=limit, cursor=cursor
    )
    return Page[ExceptionQueueItem](
        items=[_item(r.item, r.transaction) for r in rows], next_cursor=next_cursor
    )


@router.post(
    "/{exception_id}/assign",
    responses=error_responses(404, 429),
)
async def assign_exception(
    exception_id: Annotated[int, Path(ge=1, le=INT64_MAX)],
    assign_in: AssignCreate,
    session: SessionDep,
    principal: Annotated[Principal, Depends(mutation(Role.OPS, action="exception.assign"))],
) -> ExceptionQueueItem:
    """Give an exception an owner (or null to hand it back to the queue)."""
    previous, item = await queue.assign(session, exception_id, owner=assign_in.owner)
    await audit_trail.record_success(
        session,
        principal,
        action="exception.assign",
        target=f"exception:{exception_id}",
        before={"owner": previous},
        after={"owner": item.owner},
        detail={"correlation_id": item.correlation_id},
    )
    tx = await session.get(BusinessTransaction, item.correlation_id)
    assert tx is not None
    return _item(item, tx)
