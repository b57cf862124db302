"""The audit log: appended to by every mutating or denied request, never changed.

Migration 0002 adds database triggers that refuse UPDATE and DELETE on audit_log, so the
promise holds even against code that tries.
"""

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lineage.errors import InvalidCursor
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
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Append an audit row; nothing in Concord updates or deletes one."""
    session.add(
        AuditLog(
            actor=actor,
            role=role,
            action=action[:100],
            target=target[:500] if target else None,
            reason=reason,
            outcome=outcome,
            detail=detail,
            before_state=before,
            after_state=after,
        )
    )
    await session.flush()


@dataclass(frozen=True, slots=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    outcome: str | None = None
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _encode(row_id: int) -> str:
    return base64.urlsafe_b64encode(f"audit:{row_id}".encode()).decode().rstrip("=")


def _decode(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = raw.partition(":")
        if kind != "audit":
            raise ValueError(kind)
        return int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidCursor() from exc


async def list_entries(
    session: AsyncSession, flt: AuditFilter, *, limit: int, cursor: str | None = None
) -> tuple[list[AuditLog], str | None]:
    """Newest first, keyset-paginated on the append-only id."""
    query = select(AuditLog)
    if flt.actor:
        query = query.where(AuditLog.actor == flt.actor)
    if flt.action:
        query = query.where(AuditLog.action == flt.action)
    if flt.outcome:
        query = query.where(AuditLog.outcome == flt.outcome)
    if flt.target:
        query = query.where(AuditLog.target == flt.target)
    if flt.since:
        query = query.where(AuditLog.at >= flt.since)
    if flt.until:
        query = query.where(AuditLog.at < flt.until)
    if cursor:
        query = query.where(AuditLog.id < _decode(cursor))
    rows = list(await session.scalars(query.order_by(AuditLog.id.desc()).limit(limit + 1)))
    if len(rows) > limit:
        return rows[:limit], _encode(rows[limit - 1].id)
    return rows, None
