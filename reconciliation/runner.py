"""A reconciliation run, start to finish: snapshot, keep as Parquet, compare, record.

Each stage commits on its own, so `GET /v1/reconciliation/runs/{id}` shows progress while the
run is working, and a failure leaves a failed run with its error rather than nothing.
"""

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.clock import utc_now
from lineage.models import ReconciliationRun
from reconciliation import repository
from reconciliation.engine import Result, Tolerance, reconcile
from reconciliation.errors import RunFailed, SourceError
from reconciliation.snapshots import TABLES
from reconciliation.sources import Snapshot, SnapshotSource, check_period
from reconciliation.states import RunState

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunOptions:
    runs_dir: Path = Path("reconciliation-runs")
    tolerance: Tolerance = Tolerance()
    threads: int | None = None
    # A running run whose heartbeat is this old no longer blocks its period; a run beats four
    # times as often.
    stale_after: timedelta = timedelta(minutes=2)


def summarize(result: Result) -> dict[str, Any]:
    """{kind: {"count": n, "amount_minor": {currency: total}}}, aggregated by Arrow."""
    grouped = result.findings.group_by(["kind", "currency"]).aggregate(
        [("amount_at_risk_minor", "sum"), ("kind", "count")]
    )
    summary: dict[str, Any] = {
        k.value: {"count": 0, "amount_minor": {}} for k in sorted(result.kinds_evaluated)
    }
    for row in grouped.to_pylist():
        entry = summary.setdefault(row["kind"], {"count": 0, "amount_minor": {}})
        entry["count"] += row["kind_count"]
        entry["amount_minor"][row["currency"] or ""] = row["amount_at_risk_minor_sum"]
    return summary


def rerun_offline(snapshot_dir: Path, *, period: str, tolerance: Tolerance | None = None) -> Result:
    """Compare a kept run's snapshots again, with nothing but its Parquet files."""
    paths = {p.stem: p for p in sorted(snapshot_dir.glob("*.parquet")) if p.stem in TABLES}
    return reconcile(paths, period=period, tolerance=tolerance)


async def _stage(
    sessionmaker: async_sessionmaker[AsyncSession], run_id: int, stage: str, progress: int
) -> None:
    async with sessionmaker.begin() as session:
        run = await repository.get_run(session, run_id)
        run.stage, run.progress = stage, progress


async def _collect(
    sessionmaker: async_sessionmaker[AsyncSession],
    run_id: int,
    period: str,
    sources: Sequence[SnapshotSource],
) -> Snapshot:
    merged: Snapshot = {}
    for n, source in enumerate(sources, start=1):
        await _stage(
            sessionmaker, run_id, f"snapshot:{source.name}", 5 + 45 * (n - 1) // len(sources)
        )
        tables = await source.fetch(period)
        twice = set(tables) & set(merged)
        if twice:
            raise SourceError(f"{source.name} answered tables another source did: {sorted(twice)}")
        merged.update(tables)
    return merged


def _write(snapshot: Snapshot, directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for table, data in sorted(snapshot.items()):
        paths[table] = directory / f"{table}.parquet"
        pq.write_table(data, paths[table])
    return paths


async def run_reconciliation(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    period: str,
    sources: Sequence[SnapshotSource],
    options: RunOptions,
    trigger: str,
    requested_by: str | None = None,
) -> int:
    """Run a reconciliation of `period` and return its run id; RunFailed if it failed."""
    run_id = await begin_run(
        sessionmaker, period=period, options=options, trigger=trigger, requested_by=requested_by
    )
    return await carry_out(sessionmaker, run_id, period=period, sources=sources, options=options)


async def begin_run(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    period: str,
    options: RunOptions,
    trigger: str,
    requested_by: str | None = None,
) -> int:
    """Record a running run of `period` and return its id; RunInProgress if one is working."""
    check_period(period)
    async with sessionmaker.begin() as session:
        run = await repository.start_run(
            session,
            period=period,
            trigger=trigger,
            requested_by=requested_by,
            tolerance_minor=options.tolerance.default_minor,
            now=utc_now(),
            stale_after=options.stale_after,
        )
        return run.id


async def carry_out(
    sessionmaker: async_sessionmaker[AsyncSession],
    run_id: int,
    *,
    period: str,
    sources: Sequence[SnapshotSource],
    options: RunOptions,
) -> int:
    """Take a begun run to succeeded or failed; RunFailed if it failed."""
    beating = asyncio.create_task(_beat(sessionmaker, run_id, options.stale_after / 4))
    try:
        snapshot = await _collect(sessionmaker, run_id, period, sources)
        directory = options.runs_dir / str(run_id)
        await _stage(sessionmaker, run_id, "write_snapshots", 50)
        paths = await asyncio.to_thread(_write, snapshot, directory)
        await _stage(sessionmaker, run_id, "compare", 60)
        # The comparison reads the Parquet just written: exactly what an offline re-run reads.
        result = await asyncio.to_thread(
            reconcile, paths, period=period, tolerance=options.tolerance, threads=options.threads
        )
        await _stage(sessionmaker, run_id, "record", 85)
        findings = result.findings.to_pylist()
        async with sessionmaker.begin() as session:
            run = await repository.get_run(session, run_id)
            applied = await repository.apply_findings(
                session,
                run=run,
                findings=findings,
                kinds_evaluated=[k.value for k in result.kinds_evaluated],
                now=utc_now(),
            )
            run.snapshot_dir = str(directory)
            run.input_rows = result.input_rows
            run.kinds_evaluated = sorted(k.value for k in result.kinds_evaluated)
            run.summary = summarize(result)
            run.found_count, run.new_count = applied.found, applied.new
            run.auto_resolved_count = applied.auto_resolved
            run.state, run.stage, run.progress = RunState.SUCCEEDED, "done", 100
            run.finished_at = utc_now()
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:4000]
        await _fail(sessionmaker, run_id, error)
        raise RunFailed(run_id, error) from exc
    except asyncio.CancelledError:
        # The worker or API stopping mid-run: say so, or the run blocks its period until it
        # goes stale. Shielded, so that the write is not cancelled in turn.
        await asyncio.shield(
            _fail(sessionmaker, run_id, "cancelled: the process running it was stopping")
        )
        raise
    finally:
        beating.cancel()
    return run_id


async def _beat(
    sessionmaker: async_sessionmaker[AsyncSession], run_id: int, every: timedelta
) -> None:
    while True:
        await asyncio.sleep(every.total_seconds())
        try:
            async with sessionmaker.begin() as session:
                await repository.beat(session, run_id, now=utc_now())
        except Exception:
            # A missed beat only risks the run being taken as abandoned later; the run goes on.
            log.warning("reconciliation heartbeat failed", exc_info=True, extra={"run_id": run_id})


async def _fail(sessionmaker: async_sessionmaker[AsyncSession], run_id: int, error: str) -> None:
    async with sessionmaker.begin() as session:
        run = await repository.get_run(session, run_id)
        run.state, run.error, run.finished_at = RunState.FAILED, error, utc_now()


async def load_run(
    sessionmaker: async_sessionmaker[AsyncSession], run_id: int
) -> ReconciliationRun:
    async with sessionmaker() as session:
        return await repository.get_run(session, run_id)
