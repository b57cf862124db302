"""Bulk replays: a durable job row, one item row per transaction, each item's outcome kept.

The job runs in small transactions (one per item), so progress is visible while it runs, a
cancel takes effect between items, and a restarted process resumes from the pending items.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lineage.actions import start_replay
from lineage.bulk_states import UNFINISHED_BULK_STATES, BulkItemOutcome, BulkState
from lineage.enums import AttemptOutcome
from lineage.errors import (
    BulkReplayFinished,
    BulkReplayNotFound,
    NotReplayable,
    TransactionBusy,
    TransactionNotFound,
)
from lineage.models import (
    BulkReplay,
    BulkReplayItem,
    BusinessTransaction,
    ExternalRef,
    StepAttempt,
)
from lineage.queries import TransactionFilter, replayable_query


async def create(
    session: AsyncSession,
    *,
    name: str,
    requested_by: str,
    role: str,
    reason: str,
    filter_doc: dict[str, Any],
    correlation_ids: list[str],
    now: datetime,
) -> BulkReplay:
    job = BulkReplay(
        name=name,
        state=BulkState.PENDING,
        requested_by=requested_by,
        role=role,
        reason=reason,
        filter=filter_doc,
        expected_count=len(correlation_ids),
        created_at=now,
    )
    session.add(job)
    await session.flush()
    session.add_all(
        BulkReplayItem(bulk_replay_id=job.id, correlation_id=cid, outcome=BulkItemOutcome.PENDING)
        for cid in correlation_ids
    )
    await session.flush()
    return job


async def get(session: AsyncSession, bulk_id: int) -> BulkReplay:
    job = await session.get(BulkReplay, bulk_id, populate_existing=True)
    if job is None:
        raise BulkReplayNotFound(bulk_id)
    return job


async def list_jobs(session: AsyncSession, *, limit: int) -> list[BulkReplay]:
    return list(
        await session.scalars(select(BulkReplay).order_by(BulkReplay.id.desc()).limit(limit))
    )


async def counts(session: AsyncSession, bulk_id: int) -> dict[BulkItemOutcome, int]:
    rows = await session.execute(
        select(BulkReplayItem.outcome, func.count())
        .where(BulkReplayItem.bulk_replay_id == bulk_id)
        .group_by(BulkReplayItem.outcome)
    )
    return {outcome: int(n) for outcome, n in rows}


async def items(session: AsyncSession, bulk_id: int) -> list[BulkReplayItem]:
    return list(
        await session.scalars(
            select(BulkReplayItem)
            .where(BulkReplayItem.bulk_replay_id == bulk_id)
            .order_by(BulkReplayItem.id)
        )
    )


async def cancel(session: AsyncSession, bulk_id: int, *, actor: str, now: datetime) -> BulkReplay:
    """Stop a job: items not yet taken become cancelled; items already replayed stay replayed."""
    result = await session.execute(
        update(BulkReplay)
        .where(BulkReplay.id == bulk_id, BulkReplay.state.in_(UNFINISHED_BULK_STATES))
        .values(state=BulkState.CANCELLED, cancelled_by=actor, finished_at=now)
    )
    if getattr(result, "rowcount", 0) != 1:
        job = await get(session, bulk_id)
        raise BulkReplayFinished(bulk_id, job.state)
    # The runner takes an item with a conditional UPDATE too; whichever commits first wins it.
    await session.execute(
        update(BulkReplayItem)
        .where(
            BulkReplayItem.bulk_replay_id == bulk_id,
            BulkReplayItem.outcome == BulkItemOutcome.PENDING,
        )
        .values(outcome=BulkItemOutcome.CANCELLED, updated_at=now, message=f"cancelled by {actor}")
    )
    return await get(session, bulk_id)


async def claim(
    session: AsyncSession, bulk_id: int, *, now: datetime, lease_until: datetime
) -> bool:
    """Take (or renew) the lease on an unfinished job; False if it finished or someone holds it."""
    result = await session.execute(
        update(BulkReplay)
        .where(
            BulkReplay.id == bulk_id,
            BulkReplay.state.in_(UNFINISHED_BULK_STATES),
            or_(BulkReplay.lease_expires_at.is_(None), BulkReplay.lease_expires_at < now),
        )
        .values(
            state=BulkState.RUNNING,
            started_at=func.coalesce(BulkReplay.started_at, now),
            lease_expires_at=lease_until,
        )
    )
    return getattr(result, "rowcount", 0) == 1


async def renew(session: AsyncSession, bulk_id: int, *, lease_until: datetime) -> bool:
    """Extend the lease; False once the job was cancelled."""
    result = await session.execute(
        update(BulkReplay)
        .where(BulkReplay.id == bulk_id, BulkReplay.state == BulkState.RUNNING)
        .values(lease_expires_at=lease_until)
    )
    return getattr(result, "rowcount", 0) == 1


async def pending_items(
    session: AsyncSession, bulk_id: int, *, limit: int
) -> list[tuple[int, str]]:
    rows = await session.execute(
        select(BulkReplayItem.id, BulkReplayItem.correlation_id)
        .where(
            BulkReplayItem.bulk_replay_id == bulk_id,
            BulkReplayItem.outcome == BulkItemOutcome.PENDING,
        )
        .order_by(BulkReplayItem.id)
        .limit(limit)
    )
    return [(item_id, cid) for item_id, cid in rows]


@dataclass(frozen=True, slots=True)
class ItemResult:
    outcome: BulkItemOutcome | None  # None: the item was no longer pending (cancelled meanwhile)
    before_state: str | None = None
    run_number: int | None = None


async def replay_item(
    session: AsyncSession,
    item_id: int,
    correlation_id: str,
    *,
    requested_by: str,
    reason: str,
    now: datetime,
) -> ItemResult:
    """Replay one item's transaction and record the outcome, in the caller's transaction."""
    taken = await session.execute(
        update(BulkReplayItem)
        .where(BulkReplayItem.id == item_id, BulkReplayItem.outcome == BulkItemOutcome.PENDING)
        .values(updated_at=now)
    )
    if getattr(taken, "rowcount", 0) != 1:
        return ItemResult(None)
    before = await session.scalar(
        select(BusinessTransaction.state).where(
            BusinessTransaction.correlation_id == correlation_id
        )
    )
    outcome, message, run_number = BulkItemOutcome.REPLAYED, None, None
    # No savepoint needed: start_replay raises before it changes anything.
    try:
        run = await start_replay(
            session, correlation_id, requested_by=requested_by, reason=reason, now=now
        )
        run_number = run.number
    except TransactionBusy as exc:
        outcome, message = BulkItemOutcome.SKIPPED_BUSY, str(exc)
    except NotReplayable as exc:
        outcome, message = BulkItemOutcome.SKIPPED_NOT_REPLAYABLE, str(exc)
    except TransactionNotFound as exc:
        outcome, message = BulkItemOutcome.SKIPPED_MISSING, str(exc)
    await session.execute(
        update(BulkReplayItem)
        .where(BulkReplayItem.id == item_id)
        .values(outcome=outcome, message=message, run_number=run_number, updated_at=now)
    )
    return ItemResult(outcome, before.value if before else None, run_number)


async def finish(session: AsyncSession, bulk_id: int, *, now: datetime) -> None:
    await session.execute(
        update(BulkReplay)
        .where(BulkReplay.id == bulk_id, BulkReplay.state == BulkState.RUNNING)
        .values(state=BulkState.COMPLETED, finished_at=now, lease_expires_at=None)
    )


async def resumable(session: AsyncSession, *, now: datetime) -> list[int]:
    """Unfinished jobs nobody holds: a process that died left them; this one can resume them."""
    rows = await session.scalars(
        select(BulkReplay.id).where(
            BulkReplay.state.in_(UNFINISHED_BULK_STATES),
            or_(BulkReplay.lease_expires_at.is_(None), BulkReplay.lease_expires_at < now),
        )
    )
    return list(rows)


def _held_clause() -> ColumnElement[bool]:
    """The target already holds the record: a non-source external ref or a successful attempt."""
    tx = BusinessTransaction
    return or_(
        exists().where(
            ExternalRef.correlation_id == tx.correlation_id,
            ExternalRef.system != tx.source_system,
        ),
        exists().where(
            StepAttempt.correlation_id == tx.correlation_id,
            StepAttempt.outcome.in_((AttemptOutcome.SUCCEEDED, AttemptOutcome.FOUND_EXISTING)),
        ),
    )


async def preview(
    session: AsyncSession, flt: TransactionFilter, *, sample: int
) -> tuple[int, int, list[BusinessTransaction]]:
    """(how many a bulk replay would take, how many of those targets already hold, a sample)."""
    base = replayable_query(flt).subquery()
    count = await session.scalar(select(func.count()).select_from(base))
    held = await session.scalar(
        select(func.count()).select_from(replayable_query(flt).where(_held_clause()).subquery())
    )
    rows = await session.scalars(
        replayable_query(flt)
        .order_by(BusinessTransaction.received_at, BusinessTransaction.correlation_id)
        .limit(sample)
    )
    return int(count or 0), int(held or 0), list(rows)


async def target_ids(session: AsyncSession, flt: TransactionFilter, *, limit: int) -> list[str]:
    """The correlation IDs a bulk replay takes, oldest first; at most `limit`."""
    tx = BusinessTransaction
    rows = await session.scalars(
        replayable_query(flt)
        .with_only_columns(tx.correlation_id)
        .order_by(tx.received_at, tx.correlation_id)
        .limit(limit)
    )
    return list(rows)
