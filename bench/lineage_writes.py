"""Lineage writes per step: the engine's own lineage/runs.py functions against raw batched
inserts of the same rows into the same PostgreSQL.

One "step" here is the lineage a one-step transaction leaves, in the three commits that
orchestrator/engine.py and steps.py make it in: claim (lease and run); start the attempt
(step and attempt rows), committed before the call; finish it (outcome and the external
reference) and settle (posted, run closed), committed together because it was the last step.
20 at a time (a worker's max_jobs). The baseline writes the same final rows (run, step,
attempt, external reference, transaction state) with asyncpg COPY and one UPDATE per batch.

    python -m bench.lineage_writes [--steps 2000] [--runs 3] [--quick] [--out FILE]
"""

import argparse
import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bench import common
from lineage import runs
from lineage.db import make_sessionmaker
from lineage.enums import AttemptOutcome, StepState, System
from orchestrator.event_loop import use_uvloop
from orchestrator.settings import OrchestratorSettings
from orchestrator.worker import worker_engine

DATABASE = "concord_bench_lineage"
CONCURRENCY = 20
BATCH = 500


async def _seed(conn: asyncpg.Connection, count: int) -> list[str]:
    """`count` received transactions, untimed: both sides start from the same rows."""
    now = datetime.now(UTC)
    ids = [str(uuid.uuid4()) for _ in range(count)]
    await conn.copy_records_to_table(
        "business_transaction",
        columns=[
            "correlation_id",
            "workflow",
            "state",
            "source_system",
            "event_type",
            "invoice_id",
            "received_at",
            "updated_at",
            "run_count",
        ],
        records=[
            (
                cid,
                "invoice_generated",
                "received",
                "billing",
                "invoice.finalized",
                f"in_{cid[:8]}",
                now,
                now,
                0,
            )
            for cid in ids
        ],
    )
    return ids


class RoundTrips:
    """Counts the database round trips an engine makes: statements, BEGIN, COMMIT, ROLLBACK
    (none of the three in autocommit), and the pre-ping on each pool checkout, which the asyncpg dialect runs as three (BEGIN,
    an empty query, ROLLBACK). A count does not depend on how busy the machine is."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.counts: dict[str, int] = {}
        sync = engine.sync_engine
        event.listen(sync, "before_cursor_execute", self._counter("before_cursor_execute"))
        for name in ("begin", "commit", "rollback"):
            event.listen(sync, name, self._unless_autocommit(name))
        if sync.pool._pre_ping:
            event.listen(sync.pool, "checkout", self._counter("pre_ping", 3))

    def _counter(self, name: str, weight: int = 1) -> Callable[..., None]:
        def count(*_args: Any, **_kwargs: Any) -> None:
            self.counts[name] = self.counts.get(name, 0) + weight

        return count

    def _unless_autocommit(self, name: str) -> Callable[..., None]:
        # In autocommit SQLAlchemy still fires these events, but nothing reaches the database.
        def count(conn: Any, *_args: Any) -> None:
            if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
                self.counts[name] = self.counts.get(name, 0) + 1

        return count

    def reset(self) -> None:
        self.counts.clear()

    @property
    def total(self) -> int:
        return sum(self.counts.values())


async def _no_reads(_session: AsyncSession, _claimed: runs.Claim) -> None:
    """A transaction without an ordering key, as seeded, needs no reads before its call."""


async def concord_side(database_url: str, ids: list[str]) -> tuple[float, float, float]:
    """(steps per second, this process's CPU milliseconds per step, round trips per step)."""
    # The pool a worker running CONCURRENCY jobs has.
    engine = worker_engine(
        OrchestratorSettings.model_validate({"database_url": database_url, "max_jobs": CONCURRENCY})
    )
    sessionmaker = make_sessionmaker(engine)
    gate = asyncio.Semaphore(CONCURRENCY)
    trips = RoundTrips(engine)

    async def one(cid: str) -> None:
        async with gate:
            now = datetime.now(UTC)
            taken = await runs.take(
                sessionmaker,
                cid,
                owner="bench",
                lease_until=now + timedelta(seconds=90),
                now=now,
                then=_no_reads,
            )
            assert taken is not None
            claimed, _ = taken
            assert not claimed.step_states  # a first run: the step is new, as in steps.py
            _, attempt = await runs.record_first_attempt(
                sessionmaker,
                run_id=claimed.run.id,
                correlation_id=cid,
                name="erp.post_invoice",
                target=System.ERP,
                idempotency_key=f"{cid}:erp.post_invoice",
                external_id=f"in_{cid[:8]}",
                now=now,
            )
            # The last step's success and the settlement commit together (steps.py).
            await runs.record_success(
                sessionmaker,
                claimed,
                attempt,
                now=datetime.now(UTC),
                outcome=AttemptOutcome.SUCCEEDED,
                step_state=StepState.SUCCEEDED,
                http_status=201,
                target_ref=f"r{cid[:8]}",
                ref=runs.Reference(System.ERP, "invoice", f"r{cid[:8]}"),
                posting=runs.Posting(),
            )

    try:
        # Warm the pool and the statement caches outside the clock.
        async with sessionmaker() as session:
            await session.connection()
        trips.reset()
        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one(cid) for cid in ids))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        return len(ids) / elapsed, cpu * 1000 / len(ids), trips.total / len(ids)
    finally:
        await engine.dispose()


async def _next_ids(conn: asyncpg.Connection, sequence: str, count: int) -> list[int]:
    rows = await conn.fetch(f"SELECT nextval('{sequence}') FROM generate_series(1, $1)", count)
    return [int(r[0]) for r in rows]


async def _raw_batch(conn: asyncpg.Connection, ids: list[str]) -> None:
    now = datetime.now(UTC)
    n = len(ids)
    async with conn.transaction():
        run_ids = await _next_ids(conn, "workflow_run_id_seq", n)
        step_ids = await _next_ids(conn, "workflow_step_id_seq", n)
        await conn.copy_records_to_table(
            "workflow_run",
            columns=[
                "id",
                "correlation_id",
                "number",
                "trigger",
                "state",
                "started_at",
                "ended_at",
                "force_new_posting",
            ],
            records=[
                (r, c, 1, "initial", "succeeded", now, now, False)
                for r, c in zip(run_ids, ids, strict=True)
            ],
        )
        await conn.copy_records_to_table(
            "workflow_step",
            columns=[
                "id",
                "run_id",
                "correlation_id",
                "name",
                "target_system",
                "state",
                "idempotency_key",
                "external_id",
                "attempt_count",
                "started_at",
                "ended_at",
            ],
            records=[
                (
                    s,
                    r,
                    c,
                    "erp.post_invoice",
                    "erp",
                    "succeeded",
                    f"{c}:erp.post_invoice",
                    f"in_{c[:8]}",
                    1,
                    now,
                    now,
                )
                for s, r, c in zip(step_ids, run_ids, ids, strict=True)
            ],
        )
        await conn.copy_records_to_table(
            "step_attempt",
            columns=[
                "step_id",
                "correlation_id",
                "number",
                "started_at",
                "ended_at",
                "outcome",
                "http_status",
                "target_ref",
            ],
            records=[
                (s, c, 1, now, now, "succeeded", 201, f"r{c[:8]}")
                for s, c in zip(step_ids, ids, strict=True)
            ],
        )
        await conn.copy_records_to_table(
            "external_ref",
            columns=["correlation_id", "system", "object_type", "external_id", "created_at"],
            records=[(c, "erp", "invoice", f"r{c[:8]}", now) for c in ids],
        )
        await conn.execute(
            "UPDATE business_transaction SET state = 'posted', run_count = 1, updated_at = $2,"
            " completed_at = $2 WHERE correlation_id = ANY($1::varchar[])",
            ids,
            now,
        )


async def raw_side(database_url: str, ids: list[str]) -> float:
    conn = await asyncpg.connect(database_url)
    try:
        start = time.perf_counter()
        for i in range(0, len(ids), BATCH):
            await _raw_batch(conn, ids[i : i + BATCH])
        return len(ids) / (time.perf_counter() - start)
    finally:
        await conn.close()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    url = await common.recreate_database(args.database)
    raw_url = common.pg_url(args.database)
    metrics: dict[str, list[float]] = {
        "concord_steps_per_s": [],
        "raw_steps_per_s": [],
        "ratio": [],
        "concord_cpu_ms_per_step": [],
        "concord_round_trips_per_step": [],
    }
    with common.PeakRss() as peaks:
        conn = await asyncpg.connect(raw_url)
        try:
            await concord_side(url, await _seed(conn, 50))  # warm-up
            await raw_side(raw_url, await _seed(conn, 50))
            for rep in range(args.runs):
                # Alternate which side goes first so neither always meets a warmer table.
                concord_ids = await _seed(conn, args.steps)
                raw_ids = await _seed(conn, args.steps)
                if rep % 2:
                    raw = await raw_side(raw_url, raw_ids)
                    concord, cpu, trips = await concord_side(url, concord_ids)
                else:
                    concord, cpu, trips = await concord_side(url, concord_ids)
                    raw = await raw_side(raw_url, raw_ids)
                metrics["concord_cpu_ms_per_step"].append(cpu)
                metrics["concord_round_trips_per_step"].append(trips)
                metrics["concord_steps_per_s"].append(concord)
                metrics["raw_steps_per_s"].append(raw)
                metrics["ratio"].append(concord / raw)
            posted = await conn.fetchval(
                "SELECT count(*) FROM business_transaction WHERE state = 'posted'"
            )
        finally:
            await conn.close()
    expected = 100 + 2 * args.runs * args.steps
    if posted != expected:
        raise RuntimeError(f"{posted} transactions posted, expected {expected}")
    units = {
        "concord_steps_per_s": "steps/s",
        "raw_steps_per_s": "steps/s",
        "ratio": "x",
        "concord_cpu_ms_per_step": "ms CPU",
        "concord_round_trips_per_step": "round trips",
    }
    common.print_table(
        f"lineage writes, {args.steps} one-step transactions per run",
        common.stat_rows(metrics, units),
    )
    common.print_memory(peaks.peaks_mb)
    ratio = common.summary(metrics["ratio"])["median"]
    targets = {"ratio_at_least_0.5": ratio >= 0.5}
    print(f"\ntargets: {targets}")  # noqa: T201
    return {
        "steps_per_run": args.steps,
        "runs": args.runs,
        "concurrency": CONCURRENCY,
        "raw_batch": BATCH,
        # Per batch of BATCH steps: BEGIN, two nextval queries, four COPY, one UPDATE, COMMIT.
        "raw_round_trips_per_step": 9 / BATCH,
        "metrics": {k: {"values": v, **common.summary(v)} for k, v in metrics.items()},
        "units": units,
        "ratio": ratio,
        "targets_met": targets,
        "peak_rss_mb": peaks.peaks_mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="300 steps, 2 runs")
    parser.add_argument("--out", default=None)
    parser.add_argument("--database", default=DATABASE, help="dropped and created afresh")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.runs = 300, 2
    use_uvloop()  # the loop `concord worker` runs these functions on
    common.write_json("lineage_writes", asyncio.run(main_async(args)), args.out)


if __name__ == "__main__":
    main()
