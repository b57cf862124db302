"""The SQL behind lineage/sla.py: per-group counts and nearest-rank latencies, on both backends.

Time arithmetic is exact to the microsecond on both: PostgreSQL subtracts timestamps into
intervals; SQLite stores "YYYY-MM-DD HH:MM:SS.ffffff" text, so a moment becomes whole epoch
seconds (strftime('%s')) times a million plus its six fractional digits. (julianday() would
round to about 50 microseconds, and ties at a target or a bucket edge would then fall the
other way than in the definitions.) Latencies leave the database as a timedelta or as integer
microseconds and become seconds in Python, exactly as timedelta.total_seconds() does.

SLA targets are compared at microsecond precision (a target of 0.0000015 s acts as 2 µs).
"""

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    ColumnElement,
    DateTime,
    Float,
    FromClause,
    Integer,
    Interval,
    Select,
    String,
    and_,
    case,
    cast,
    column,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    true,
    type_coerce,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

from lineage.db import UTCDateTime
from lineage.enums import ACTIVE_STATES, ExceptionStatus, TxState
from lineage.models import BusinessTransaction, ExceptionItem, WorkflowStep

DONE_STATES = frozenset({TxState.POSTED, TxState.MANUALLY_RESOLVED, TxState.REVERSED})
NO_TARGET = "none"
PERCENTILES = (50, 95, 99)
ONE_US = timedelta(microseconds=1)
_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")

tx = BusinessTransaction
# A column attribute or any SQL expression.
Expr = ColumnElement[Any] | QueryableAttribute[Any]


@dataclass(frozen=True, slots=True)
class Part:
    """Counts for one (group, workflow, currency): additive, so groups sum their parts."""

    group: Hashable
    workflow: str
    currency: str | None
    total: int
    posted: int
    met: int
    late: int  # done after the target
    past: int  # not done and older than the target
    overdue: int
    open_exceptions: int
    risk_rows: int  # of `past`, those with an amount
    risk_minor: int


@dataclass(frozen=True, slots=True)
class Grouping:
    """What a transaction is counted under: its workflow, its target systems, or its bucket."""

    source: FromClause
    key: ColumnElement[Any]
    # By bucket on PostgreSQL: each bucket's [start, stop), which percentiles read one index
    # range at a time rather than sorting the whole window by bucket first.
    ranges: tuple[tuple[datetime, datetime], ...] = ()


# Part's counts, after its group, workflow and currency.
_COUNTS = tuple(f.name for f in fields(Part))[3:]


def nearest_rank(count: int, pct: float) -> int:
    """1-based rank of the nearest-rank percentile among `count` (> 0) sorted values: the same
    float product and ceiling as PostgreSQL's percentile_disc."""
    return max(1, math.ceil(pct / 100 * count))


class SlaQueries:
    """Builds and runs the window's aggregate queries for one session's backend."""

    def __init__(
        self,
        session: AsyncSession,
        *,
        since: datetime,
        until: datetime,
        now: datetime,
        targets: Mapping[str, float],
        default_target_s: float,
        workflow: str | None = None,
    ) -> None:
        self.session = session
        self.postgres = session.get_bind().dialect.name == "postgresql"
        self.until = until
        self.in_window: list[ColumnElement[bool]] = [
            tx.received_at >= since,
            tx.received_at < until,
            tx.workflow.is_not(None),
        ]
        if workflow:
            self.in_window.append(tx.workflow == workflow)
        spans = {wf: timedelta(seconds=s) for wf, s in targets.items()}
        default = timedelta(seconds=default_target_s)
        # Undecided (not done, no older than its target) <=> received at or after now - target.
        self.young = tx.received_at >= self._per_workflow(
            {wf: literal(now - span, UTCDateTime()) for wf, span in spans.items()},
            literal(now - default, UTCDateTime()),
        )
        self.latency = self._span(tx.completed_at, tx.received_at)
        self.on_time = self.latency <= self._per_workflow(
            {wf: self._span_literal(span) for wf, span in spans.items()},
            self._span_literal(default),
        )
        self.posted = and_(tx.state == TxState.POSTED, tx.completed_at.is_not(None))

    # -- dialect pieces ------------------------------------------------------------------------

    def _per_workflow(
        self, values: Mapping[str, ColumnElement[Any]], default: ColumnElement[Any]
    ) -> ColumnElement[Any]:
        if not values:
            return default
        return case(*((tx.workflow == wf, v) for wf, v in values.items()), else_=default)

    def _micros(self, moment: Expr) -> ColumnElement[Any]:
        """SQLite: microseconds since the epoch of a stored moment, in integers throughout.
        The whole seconds are read without the fraction: SQLite keeps moments in milliseconds,
        so strftime('%s') of 02:59:59.999999 says 03:00:00."""
        seconds = cast(func.strftime("%s", func.substr(moment, 1, 19)), Integer)
        fraction = cast(func.substr(moment, 21, 6), Integer)
        return seconds * 1_000_000 + fraction

    def _span(self, end: Expr, start: Expr) -> ColumnElement[Any]:
        if self.postgres:
            return type_coerce(end - start, Interval())
        return self._micros(end) - self._micros(start)

    def _span_literal(self, span: timedelta) -> ColumnElement[Any]:
        if self.postgres:
            return literal(span, Interval())
        return literal(span // ONE_US, BigInteger())

    def seconds(self, value: object) -> float:
        """A latency as fetched, in seconds (timedelta.total_seconds() on both backends)."""
        if isinstance(value, timedelta):
            return value.total_seconds()
        return timedelta(microseconds=int(value)).total_seconds()  # type: ignore[call-overload]

    # -- groupings -----------------------------------------------------------------------------

    def by_workflow(self) -> Grouping:
        return Grouping(tx.__table__, tx.workflow.expression)

    def by_target(self) -> Grouping:
        """One row per (transaction, distinct target system), or one "none" row without steps."""
        window_ids = select(tx.correlation_id).where(*self.in_window)
        steps = (
            select(WorkflowStep.correlation_id, WorkflowStep.target_system)
            .where(WorkflowStep.correlation_id.in_(window_ids))
            .distinct()
            .subquery("targets")
        )
        source = tx.__table__.outerjoin(steps, steps.c.correlation_id == tx.correlation_id)
        key = func.coalesce(type_coerce(steps.c.target_system, String()), NO_TARGET)
        return Grouping(source, key)

    def by_bucket(self, start: datetime, step: timedelta) -> Grouping:
        """The bucket of received_at, floor((received_at - start) / step) in microseconds: on
        PostgreSQL the bucket's start (date_bin), on SQLite its index; see bucket_index."""
        if self.postgres:
            key = func.date_bin(
                literal(step, Interval()), tx.received_at, literal(start, UTCDateTime())
            )
            count = math.ceil((self.until - start) / step)
            ranges = tuple((start + i * step, start + (i + 1) * step) for i in range(count))
            return Grouping(tx.__table__, key, ranges)
        index = (self._micros(tx.received_at) - (start - _EPOCH) // ONE_US) // (step // ONE_US)
        return Grouping(tx.__table__, index)

    # -- queries -------------------------------------------------------------------------------

    async def parts(self, grouping: Grouping) -> list[Part]:
        """Counts per (group, workflow, currency), from one row per class of transaction: the
        database evaluates each condition once per row as a grouping key, and the few dozen
        classes fold into Parts here (half the time of a dozen filtered counts at 1 M rows)."""
        if self.postgres:
            # JIT compiling these expressions cost 100-300 ms per statement at a million rows,
            # about a third of the statement (docs/performance.md). SET LOCAL: for the rest of
            # the caller's transaction only, which reads the figures and ends.
            await self.session.execute(text("SET LOCAL jit = off"))
        opened = (
            select(ExceptionItem.correlation_id, func.count().label("n"))
            .where(ExceptionItem.status == ExceptionStatus.OPEN)
            .group_by(ExceptionItem.correlation_id)
            .subquery("opened")
        )
        classes = (
            grouping.key.label("grp"),
            tx.workflow,
            tx.currency,
            tx.state,
            tx.completed_at.is_not(None).label("completed"),
            self.on_time.label("on_time"),
            self.young.label("young"),
        )
        query = (
            select(
                *classes,
                func.count(),
                func.count(tx.amount_minor),
                func.coalesce(func.sum(tx.amount_minor), 0),
                func.coalesce(func.sum(opened.c.n), 0),
            )
            .select_from(
                grouping.source.outerjoin(opened, opened.c.correlation_id == tx.correlation_id)
            )
            .where(*self.in_window)
            .group_by(*classes)
        )
        counts: dict[tuple[Hashable, str, str | None], Counter[str]] = defaultdict(Counter)
        rows = await self.session.execute(query)
        for grp, wf, cur, state, completed, on_time, young, n, n_amount, amount, opens in rows:
            c = counts[(grp, wf, cur)]
            done = completed and state in DONE_STATES
            past = not done and not young
            c["total"] += n
            c["posted"] += n if completed and state == TxState.POSTED else 0
            c["met"] += n if done and on_time else 0
            c["late"] += n if done and not on_time else 0
            c["open_exceptions"] += int(opens)
            if past:
                c["past"] += n
                c["overdue"] += n if state in ACTIVE_STATES else 0
                c["risk_rows"] += n_amount
                c["risk_minor"] += int(amount)
        return [
            Part(grp, wf, cur, **{name: c[name] for name in _COUNTS})
            for (grp, wf, cur), c in counts.items()
        ]

    async def percentiles(self, grouping: Grouping) -> dict[Hashable, tuple[float | None, ...]]:
        """p50, p95, p99 of posted latency per group: the values at nearest_rank(n, p), each
        from one statement, so that ranks and rows agree while transactions keep posting."""
        if self.postgres:
            return await self._percentile_disc(grouping)
        return await self._ranked(grouping)

    async def _percentile_disc(
        self, grouping: Grouping
    ) -> dict[Hashable, tuple[float | None, ...]]:
        # percentile_disc(f) is the first value whose position reaches f * n: rank ceil(f * n),
        # the nearest rank, with f the same float8 that pct / 100 is in Python.
        fractions = ", ".join(repr(p / 100) for p in PERCENTILES)
        wanted: ColumnElement[Any] = literal_column(f"ARRAY[{fractions}]::float8[]")
        # Sorted as whole microseconds (int8), a third faster than as intervals at 1 M rows;
        # exact: the interval is whole microseconds, and its float8 seconds times a million
        # round back to them for any latency under 30 years.
        micros = cast(func.date_part("epoch", self.latency) * 1_000_000, BigInteger)
        per_group = func.percentile_disc(wanted).within_group(micros)
        query: Select[tuple[Any, Any]]
        if grouping.ranges:
            query = self._per_range(grouping.ranges, per_group)
        else:
            key = grouping.key.label("grp")
            query = (
                select(key, per_group)
                .select_from(grouping.source)
                .where(*self.in_window, self.posted)
                .group_by(key)
            )
        return {
            grp: tuple(self.seconds(v) for v in values)
            for grp, values in await self.session.execute(query)
        }

    def _per_range(
        self, ranges: tuple[tuple[datetime, datetime], ...], aggregate: ColumnElement[Any]
    ) -> Select[tuple[Any, Any]]:
        """The aggregate over each range of received_at, one index range scan and one small
        sort each (a third less time than sorting a million rows by bucket); empty ranges left
        out, as a GROUP BY leaves them."""
        moments = ARRAY(DateTime(timezone=True))
        bounds = (
            func.unnest(
                literal([lo for lo, _ in ranges], moments),
                literal([hi for _, hi in ranges], moments),
            )
            .table_valued(column("lo", UTCDateTime()), column("hi", UTCDateTime()))
            .render_derived(name="bounds")
        )
        per = (
            select(aggregate.label("value"))
            .where(
                *self.in_window,
                self.posted,
                tx.received_at >= bounds.c.lo,
                tx.received_at < bounds.c.hi,
            )
            .lateral("per")
        )
        return (
            select(bounds.c.lo, per.c.value)
            .select_from(bounds.join(per, true()))
            .where(per.c.value.is_not(None))
        )

    async def _ranked(self, grouping: Grouping) -> dict[Hashable, tuple[float | None, ...]]:
        """SQLite: number the posted latencies per group and keep the wanted ranks, counted in
        the same statement so that the ranks and the rows agree."""
        inner = (
            select(
                grouping.key.label("grp"),
                self.latency.label("latency"),
                func.row_number()
                .over(partition_by=grouping.key, order_by=self.latency)
                .label("rn"),
                func.count().over(partition_by=grouping.key).label("n"),
            )
            .select_from(grouping.source)
            .where(*self.in_window, self.posted)
            .subquery("ranked")
        )
        found: dict[Hashable, dict[int, float]] = defaultdict(dict)
        counts: dict[Hashable, int] = {}
        for grp, latency, rn, n in await self.session.execute(
            select(inner.c.grp, inner.c.latency, inner.c.rn, inner.c.n).where(
                or_(*(inner.c.rn == _sql_rank(inner.c.n, p) for p in PERCENTILES))
            )
        ):
            found[grp][rn] = self.seconds(latency)
            counts[grp] = n
        return {
            grp: tuple(found[grp][nearest_rank(n, p)] for p in PERCENTILES)
            for grp, n in counts.items()
        }


def bucket_index(key: Hashable, start: datetime, step: timedelta) -> int:
    """The index of a by_bucket() key: a bucket's start (PostgreSQL) or already its index."""
    if isinstance(key, datetime):
        return (key - start) // step
    assert isinstance(key, int)
    return key


def _sql_rank(count: ColumnElement[Any], pct: float) -> ColumnElement[Any]:
    """ceil(pct / 100 * count) for SQLite, which may lack ceil(); the same float product."""
    product = literal(pct / 100, Float()) * count
    whole = cast(product, Integer)
    return case((whole < product, whole + 1), else_=whole)
