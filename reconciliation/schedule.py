"""What the schedule reconciles: the current month, every month whose transactions changed
lately, and the month reconciled longest ago. Reconciling the current month alone left the last
changes to a month that had just ended (a late posting, a replay on the 1st) to no scheduled
run at all; so did the sandbox's clock, which runs months ahead of the wall clock. A difference
that arises on one side alone (the ERP edited by hand) changes no transaction: the month
reconciled longest ago, one per run of the schedule, finds it in time in every month."""

import logging
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.enums import TxState
from lineage.models import BusinessTransaction, ReconciliationRun
from reconciliation.errors import RunFailed, RunInProgress
from reconciliation.service import reconcile_period
from reconciliation.settings import ReconciliationSettings

log = logging.getLogger(__name__)


async def periods_due(
    session: AsyncSession, *, now: datetime, since: datetime, limit: int
) -> list[str]:
    """The current month first, then the months of transactions changed since `since`, the one
    reconciled longest ago first (never before the others; newest first among equals), then
    (with a `limit` of 3 or more) the month whose latest reconciliation started longest ago:
    `limit` in all."""
    current = now.strftime("%Y-%m")
    tx = BusinessTransaction
    rotating = 1 if limit >= 3 else 0
    run = ReconciliationRun
    recent = (
        select(tx.period)
        .distinct()
        # Every state, so the (state, updated_at) index serves the range.
        .where(tx.state.in_(list(TxState)), tx.updated_at >= since)
        .where(tx.period.is_not(None), tx.period != current)
        .subquery()
    )
    # When each month's latest reconciliation started: the order of both the changed months
    # and the rotation.
    last = (
        select(run.period, func.max(run.started_at).label("started_at"))
        .group_by(run.period)
        .subquery()
    )
    # Newest first would give the same month every slot while newer ones keep changing, and
    # a month that never got one would leave the window unreconciled.
    changed = await session.scalars(
        select(recent.c.period)
        .outerjoin(last, last.c.period == recent.c.period)
        .order_by(last.c.started_at.asc().nulls_first(), recent.c.period.desc())
        .limit(max(0, limit - 1 - rotating))
    )
    due = [current, *(p for p in changed if p is not None)]
    if rotating:
        stalest = await session.scalar(
            select(last.c.period)
            .where(last.c.period.not_in(due))
            .order_by(last.c.started_at, last.c.period.desc())
            .limit(1)
        )
        due += [stalest] if stalest is not None else []
    return due


async def reconcile_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: ReconciliationSettings,
    *,
    now: datetime,
    window: timedelta,
    limit: int,
) -> list[int]:
    """Reconcile each period due, one after another; the runs made, failed ones included."""
    async with sessionmaker() as session:
        periods = await periods_due(session, now=now, since=now - window, limit=limit)
    runs: list[int] = []
    for period in periods:
        try:
            runs.append(
                await reconcile_period(sessionmaker, settings, period=period, trigger="cron")
            )
        except RunInProgress:
            # Another worker's schedule, or a person, is on it.
            continue
        except RunFailed as exc:
            # Kept on the run; the other periods are still worth reconciling.
            log.warning("scheduled reconciliation failed", extra={"run_id": exc.run_id})
            runs.append(exc.run_id)
    return runs
