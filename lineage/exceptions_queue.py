"""The exception queue: what failed, how long ago, who owns it, what to do next."""

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lineage.enums import ExceptionStatus
from lineage.errors import ExceptionNotFound, InvalidCursor
from lineage.models import BusinessTransaction, ExceptionItem


class ExceptionSort(StrEnum):
    OLDEST = "oldest"
    NEWEST = "newest"


@dataclass(frozen=True, slots=True)
class ExceptionFilter:
    status: ExceptionStatus | None = ExceptionStatus.OPEN
    classification: str | None = None
    workflow: str | None = None
    owner: str | None = None
    # Only exceptions nobody has taken yet.
    unassigned: bool = False


@dataclass(frozen=True, slots=True)
class QueuedException:
    item: ExceptionItem
    transaction: BusinessTransaction


def _encode(item: ExceptionItem) -> str:
    raw = json.dumps([item.created_at.isoformat(), item.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, item_id = json.loads(raw)
        return datetime.fromisoformat(created), int(item_id)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InvalidCursor() from exc


async def list_exceptions(
    session: AsyncSession,
    flt: ExceptionFilter,
    *,
    sort: ExceptionSort,
    limit: int,
    cursor: str | None = None,
) -> tuple[list[QueuedException], str | None]:
    item, tx = ExceptionItem, BusinessTransaction
    query = select(item, tx).join(tx, tx.correlation_id == item.correlation_id)
    if flt.status:
        query = query.where(item.status == flt.status)
    if flt.classification:
        query = query.where(item.classification == flt.classification)
    if flt.workflow:
        query = query.where(tx.workflow == flt.workflow)
    if flt.owner:
        query = query.where(item.owner == flt.owner)
    if flt.unassigned:
        query = query.where(item.owner.is_(None))
    oldest = sort is ExceptionSort.OLDEST
    if cursor:
        created, item_id = _decode(cursor)
        if oldest:
            after = or_(
                item.created_at > created, and_(item.created_at == created, item.id > item_id)
            )
        else:
            after = or_(
                item.created_at < created, and_(item.created_at == created, item.id < item_id)
            )
        query = query.where(after)
    order = (item.created_at, item.id) if oldest else (item.created_at.desc(), item.id.desc())
    rows = [
        QueuedException(i, t)
        for i, t in await session.execute(query.order_by(*order).limit(limit + 1))
    ]
    if len(rows) > limit:
        return rows[:limit], _encode(rows[limit - 1].item)
    return rows, None


async def get_exception(session: AsyncSession, exception_id: int) -> ExceptionItem:
    row = await session.get(ExceptionItem, exception_id)
    if row is None:
        raise ExceptionNotFound(exception_id)
    return row


async def assign(
    session: AsyncSession, exception_id: int, *, owner: str | None
) -> tuple[str | None, ExceptionItem]:
    """Set (or clear) the owner; returns the previous owner and the updated row."""
    row = await get_exception(session, exception_id)
    previous = row.owner
    await session.execute(
        update(ExceptionItem).where(ExceptionItem.id == exception_id).values(owner=owner)
    )
    await session.refresh(row)
    return previous, row
