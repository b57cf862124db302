from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from lineage.models import AuditLog


async def record(
    session: AsyncSession,
    *,
    actor: str,
    role: str | None,
    action: str,
    outcome: str,
    target: str | None = None,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append an audit row; nothing in Concord updates or deletes one."""
    session.add(
        AuditLog(
            actor=actor,
            role=role,
            action=action,
            target=target,
            reason=reason,
            outcome=outcome,
            detail=detail,
        )
    )
    await session.flush()
