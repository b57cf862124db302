from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import AdminDep, SessionDep
from api.errors import error_responses
from api.schemas import Page
from api.schemas_actions import AuditRead
from lineage import audit

# Read-only on purpose: no route edits or deletes an audit row (and the database refuses to).
router = APIRouter(
    prefix="/v1/audit", tags=["audit"], responses=error_responses(400, 401, 403, 422)
)


@router.get("")
async def list_audit(
    session: SessionDep,
    _principal: AdminDep,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[str | None, Query(max_length=100)] = None,
    outcome: Annotated[str | None, Query(max_length=32)] = None,
    target: Annotated[str | None, Query(max_length=500)] = None,
    since: Annotated[datetime | None, Query()] = None,
    until: Annotated[datetime | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Page[AuditRead]:
    """The audit log, newest first: every mutating or denied call, who, why and the outcome."""
    flt = audit.AuditFilter(
        actor=actor, action=action, outcome=outcome, target=target, since=since, until=until
    )
    rows, next_cursor = await audit.list_entries(session, flt, limit=limit, cursor=cursor)
    return Page[AuditRead](
        items=[AuditRead.model_validate(r) for r in rows], next_cursor=next_cursor
    )
