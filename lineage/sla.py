"""SLA figures over a window of transactions: attainment, latency percentiles, money at risk.

The database aggregates (lineage/sla_sql.py): counts per group, workflow, currency and class of
transaction in one GROUP BY, and the nearest-rank percentiles in a second query (percentile_disc
on PostgreSQL, row_number() on SQLite), so what a call reads grows with its groups and buckets,
not with the transactions in the window.

Definitions, per transaction received in the window (ignored events start no workflow and are
left out):
- done: posted, manually resolved or reversed, with a completed_at; its latency is
  completed_at - received_at.
- met: done within its workflow's SLA target. breached: done late, or not done while older than
  the target. Transactions not done and no older than the target are undecided and count in
  neither, so attainment = met / (met + breached), in percent to 2 places.
- overdue: still active (received, pending, running, retrying) and older than the target:
  stuck, reported without waiting for it to fail.
- money at risk: amount of transactions not done and older than the target, per currency
  (those without an amount or a currency are left out).
- open exceptions: open exception items of the group's transactions.
- latency percentiles (nearest rank: the value at rank max(1, ceil(p / 100 * n)) of the n
  sorted latencies, in seconds) and throughput (per hour of the window): over posted
  transactions with a completed_at only.
- by target system, a transaction counts once for each distinct system its steps call, or under
  "none" when it has no step yet; the group's SLA target is given only when all its
  transactions share one.
"""

import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from lineage.sla_sql import NO_TARGET, Grouping, Part, SlaQueries, bucket_index

__all__ = ["NO_TARGET", "SlaFigures", "summary", "timeseries"]


@dataclass(slots=True)
class SlaFigures:
    group: str
    sla_target_s: float | None
    total: int = 0
    posted: int = 0
    met: int = 0
    breached: int = 0
    overdue: int = 0
    open_exceptions: int = 0
    attainment_pct: float | None = None
    p50_s: float | None = None
    p95_s: float | None = None
    p99_s: float | None = None
    throughput_per_hour: float = 0.0
    money_at_risk: dict[str, int] = field(default_factory=dict)


def _figures(
    group: str,
    parts: Iterable[Part],
    percentiles: tuple[float | None, ...] | None,
    *,
    targets: Mapping[str, float],
    default_target_s: float,
    hours: float,
) -> SlaFigures:
    parts = list(parts)
    own_targets = {targets.get(p.workflow, default_target_s) for p in parts}
    out = SlaFigures(group, own_targets.pop() if len(own_targets) == 1 else None)
    at_risk: dict[str, int] = defaultdict(int)
    for p in parts:
        out.total += p.total
        out.posted += p.posted
        out.met += p.met
        out.breached += p.late + p.past
        out.overdue += p.overdue
        out.open_exceptions += p.open_exceptions
        if p.risk_rows and p.currency:
            at_risk[p.currency] += p.risk_minor
    decided = out.met + out.breached
    out.attainment_pct = round(100.0 * out.met / decided, 2) if decided else None
    out.p50_s, out.p95_s, out.p99_s = percentiles or (None, None, None)
    out.throughput_per_hour = round(out.posted / hours, 4) if hours > 0 else 0.0
    out.money_at_risk = dict(sorted(at_risk.items()))
    return out


async def _grouped(
    queries: SlaQueries, grouping: Grouping
) -> tuple[dict[Hashable, list[Part]], dict[Hashable, tuple[float | None, ...]]]:
    parts = await queries.parts(grouping)
    by_group: dict[Hashable, list[Part]] = defaultdict(list)
    for part in parts:
        by_group[part.group].append(part)
    return by_group, await queries.percentiles(grouping)


async def summary(
    session: AsyncSession,
    *,
    since: datetime,
    until: datetime,
    group_by: Literal["workflow", "target"],
    targets: Mapping[str, float],
    default_target_s: float,
    now: datetime,
) -> list[SlaFigures]:
    """Figures per workflow, or per target system, for transactions received in [since, until)."""
    queries = SlaQueries(
        session,
        since=since,
        until=until,
        now=now,
        targets=targets,
        default_target_s=default_target_s,
    )
    grouping = queries.by_workflow() if group_by == "workflow" else queries.by_target()
    by_group, pcts = await _grouped(queries, grouping)
    hours = (until - since).total_seconds() / 3600
    return [
        _figures(
            str(k),
            by_group[k],
            pcts.get(k),
            targets=targets,
            default_target_s=default_target_s,
            hours=hours,
        )
        for k in sorted(by_group, key=str)
    ]


async def timeseries(
    session: AsyncSession,
    *,
    since: datetime,
    until: datetime,
    bucket: timedelta,
    targets: Mapping[str, float],
    default_target_s: float,
    now: datetime,
    workflow: str | None = None,
) -> list[tuple[datetime, SlaFigures]]:
    """Figures per bucket of received_at, every bucket present (empty ones too). Buckets are
    aligned on the epoch, so the first one may start before `since`."""
    step = bucket.total_seconds()
    epoch = datetime.fromtimestamp(0, since.tzinfo)
    start = epoch + timedelta(seconds=math.floor((since - epoch).total_seconds() / step) * step)
    queries = SlaQueries(
        session,
        since=since,
        until=until,
        now=now,
        targets=targets,
        default_target_s=default_target_s,
        workflow=workflow,
    )
    by_key, by_key_pcts = await _grouped(queries, queries.by_bucket(start, bucket))
    by_bucket = {bucket_index(k, start, bucket): v for k, v in by_key.items()}
    pcts = {bucket_index(k, start, bucket): v for k, v in by_key_pcts.items()}
    out: list[tuple[datetime, SlaFigures]] = []
    index, moment = 0, start
    while moment < until:
        out.append(
            (
                moment,
                _figures(
                    "all",
                    by_bucket.get(index, []),
                    pcts.get(index),
                    targets=targets,
                    default_target_s=default_target_s,
                    hours=step / 3600,
                ),
            )
        )
        index += 1
        moment = start + timedelta(seconds=index * step)
    return out
