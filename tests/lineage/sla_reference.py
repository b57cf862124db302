"""The SLA definitions as lineage/sla.py computed them before the database did: every row of
the window read into Python, figures counted there. Tests hold the SQL to these numbers."""

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from lineage.enums import ACTIVE_STATES, ExceptionStatus, TxState
from lineage.models import BusinessTransaction, ExceptionItem, WorkflowStep
from lineage.sla import SlaFigures

DONE_STATES = frozenset({TxState.POSTED, TxState.MANUALLY_RESOLVED, TxState.REVERSED})
NO_TARGET = "none"


@dataclass(frozen=True, slots=True)
class TxTiming:
    correlation_id: str
    workflow: str
    state: TxState
    received_at: datetime
    completed_at: datetime | None
    amount_minor: int | None
    currency: str | None
    open_exceptions: int = 0
    targets: tuple[str, ...] = ()


def percentile(sorted_values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile of already sorted values; None for no values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def figures(
    group: str,
    rows: Sequence[TxTiming],
    *,
    targets: Mapping[str, float],
    default_target_s: float,
    now: datetime,
    hours: float,
) -> SlaFigures:
    own_targets = {targets.get(r.workflow, default_target_s) for r in rows}
    out = SlaFigures(group, own_targets.pop() if len(own_targets) == 1 else None, total=len(rows))
    latencies: list[float] = []
    at_risk: dict[str, int] = defaultdict(int)
    for row in rows:
        target = targets.get(row.workflow, default_target_s)
        out.open_exceptions += row.open_exceptions
        done = row.state in DONE_STATES and row.completed_at is not None
        if done and row.completed_at is not None:
            latency = (row.completed_at - row.received_at).total_seconds()
            if row.state is TxState.POSTED:
                out.posted += 1
                latencies.append(latency)
            if latency <= target:
                out.met += 1
            else:
                out.breached += 1
            continue
        if (now - row.received_at).total_seconds() <= target:
            continue
        out.breached += 1
        if row.state in ACTIVE_STATES:
            out.overdue += 1
        if row.amount_minor is not None and row.currency:
            at_risk[row.currency] += row.amount_minor
    decided = out.met + out.breached
    out.attainment_pct = round(100.0 * out.met / decided, 2) if decided else None
    latencies.sort()
    out.p50_s, out.p95_s, out.p99_s = (percentile(latencies, p) for p in (50, 95, 99))
    out.throughput_per_hour = round(out.posted / hours, 4) if hours > 0 else 0.0
    out.money_at_risk = dict(sorted(at_risk.items()))
    return out


async def load_window(
    session: AsyncSession, *, since: datetime, until: datetime, workflow: str | None = None
) -> list[TxTiming]:
    """Every workflow transaction received in [since, until), with its open exceptions and targets."""
    tx = BusinessTransaction
    in_window: list[ColumnElement[bool]] = [
        tx.received_at >= since,
        tx.received_at < until,
        tx.workflow.is_not(None),
    ]
    if workflow:
        in_window.append(tx.workflow == workflow)
    open_counts: dict[str, int] = {
        cid: int(n)
        for cid, n in await session.execute(
            select(ExceptionItem.correlation_id, func.count())
            .join(tx, tx.correlation_id == ExceptionItem.correlation_id)
            .where(*in_window, ExceptionItem.status == ExceptionStatus.OPEN)
            .group_by(ExceptionItem.correlation_id)
        )
    }
    step_targets: dict[str, set[str]] = defaultdict(set)
    for cid, system in await session.execute(
        select(WorkflowStep.correlation_id, WorkflowStep.target_system)
        .join(tx, tx.correlation_id == WorkflowStep.correlation_id)
        .where(*in_window)
        .distinct()
    ):
        step_targets[cid].add(system.value)
    rows = await session.execute(
        select(
            tx.correlation_id,
            tx.workflow,
            tx.state,
            tx.received_at,
            tx.completed_at,
            tx.amount_minor,
            tx.currency,
        ).where(*in_window)
    )
    return [
        TxTiming(
            cid,
            wf or "",
            state,
            received,
            completed,
            amount,
            currency,
            open_counts.get(cid, 0),
            tuple(sorted(step_targets.get(cid, ()))),
        )
        for cid, wf, state, received, completed, amount, currency in rows
    ]


def summary(
    rows: Sequence[TxTiming],
    *,
    group_by: str,
    targets: Mapping[str, float],
    default_target_s: float,
    now: datetime,
    window: timedelta,
) -> list[SlaFigures]:
    """Figures per workflow, or per target system (a transaction counts for each of its targets)."""
    groups: dict[str, list[TxTiming]] = defaultdict(list)
    for row in rows:
        keys = (row.workflow,) if group_by == "workflow" else (row.targets or (NO_TARGET,))
        for key in keys:
            groups[key].append(row)
    hours = window.total_seconds() / 3600
    return [
        figures(
            k, groups[k], targets=targets, default_target_s=default_target_s, now=now, hours=hours
        )
        for k in sorted(groups)
    ]


def timeseries(
    rows: Sequence[TxTiming],
    *,
    since: datetime,
    until: datetime,
    bucket: timedelta,
    targets: Mapping[str, float],
    default_target_s: float,
    now: datetime,
) -> list[tuple[datetime, SlaFigures]]:
    """Figures per bucket of received_at, every bucket present (empty ones too)."""
    step = bucket.total_seconds()
    epoch = datetime.fromtimestamp(0, since.tzinfo)
    start = epoch + timedelta(seconds=math.floor((since - epoch).total_seconds() / step) * step)
    by_bucket: dict[int, list[TxTiming]] = defaultdict(list)
    for row in rows:
        by_bucket[int((row.received_at - start).total_seconds() // step)].append(row)
    out: list[tuple[datetime, SlaFigures]] = []
    index, moment = 0, start
    while moment < until:
        out.append(
            (
                moment,
                figures(
                    "all",
                    by_bucket.get(index, []),
                    targets=targets,
                    default_target_s=default_target_s,
                    now=now,
                    hours=step / 3600,
                ),
            )
        )
        index += 1
        moment = start + timedelta(seconds=index * step)
    return out
