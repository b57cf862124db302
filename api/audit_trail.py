"""Audit rows for control-plane calls: successes in the request's own transaction, failures
and denials in a transaction of their own (the request's work is rolled back)."""

from typing import Any

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from lineage import audit
from lineage.apikeys import Principal

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def action_of(request: Request) -> str:
    """The audit action a route declared (see deps.require), else 'METHOD /path'."""
    declared = getattr(request.state, "audit_action", None)
    return declared if isinstance(declared, str) else f"{request.method} {request.url.path}"


async def record_success(
    session: AsyncSession,
    principal: Principal,
    *,
    action: str,
    target: str | None,
    reason: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Audit a change in the same transaction as the change: both commit, or neither."""
    await audit.record(
        session,
        actor=principal.name,
        role=principal.role,
        action=action,
        target=target,
        reason=reason,
        outcome="succeeded",
        before=before,
        after=after,
        detail=detail,
    )


async def record_failure(request: Request, *, status: int, code: str) -> None:
    """Audit a mutating call that an admitted caller made and that failed (4xx or 5xx).

    Denials (401/403/429) are audited by the role guard before a principal is admitted, so
    they never reach here twice.
    """
    principal = getattr(request.state, "principal", None)
    if request.method not in MUTATING_METHODS or not isinstance(principal, Principal):
        return
    sessionmaker = getattr(request.state, "sessionmaker", None)
    if sessionmaker is None:
        return
    async with sessionmaker.begin() as session:
        await audit.record(
            session,
            actor=principal.name,
            role=principal.role,
            action=action_of(request),
            target=request.url.path,
            outcome="failed" if status >= 500 else "rejected",
            detail={"status": status, "code": code},
        )
