"""Runs and the mismatch lifecycle, on SQLite and PostgreSQL: the same difference is the same
mismatch; a fixed one is auto-resolved; a person's resolution holds until the values change."""

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.clock import utc_now
from lineage.models import Mismatch, ReconciliationRun
from reconciliation import repository
from reconciliation.engine import Tolerance
from reconciliation.errors import MismatchNotOpen, RunFailed, RunInProgress
from reconciliation.runner import RunOptions, load_run, rerun_offline, run_reconciliation
from reconciliation.sources import ParquetDirectorySource, Snapshot
from tests.reconciliation.world import PERIOD, World, clean_world

SM = async_sessionmaker[AsyncSession]


def _snapshot(world: World, directory: Path) -> ParquetDirectorySource:
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.parquet"):
        old.unlink()
    for name, table in world.arrow().items():
        pq.write_table(table, directory / f"{name}.parquet")
    return ParquetDirectorySource(directory)


def _drifted() -> World:
    world = clean_world()
    world.row("erp_invoices", external_id="in_usd_open")["amount_minor"] = 10_500
    world.drop("erp_payments", invoice_external_id="in_jpy_paid")
    return world


async def _run(sessionmaker: SM, world: World, tmp_path: Path) -> int:
    return await run_reconciliation(
        sessionmaker,
        period=PERIOD,
        sources=[_snapshot(world, tmp_path / "in")],
        options=RunOptions(runs_dir=tmp_path / "runs", tolerance=Tolerance(default_minor=1)),
        trigger="test",
        requested_by="finance-test",
    )


async def _mismatches(sessionmaker: SM) -> dict[str, Mismatch]:
    async with sessionmaker() as session:
        rows = await session.scalars(select(Mismatch).order_by(Mismatch.id))
        return {m.kind: m for m in rows}


async def test_a_run_records_its_mismatches_counts_amounts_and_snapshots(
    sessionmaker: SM, tmp_path: Path
) -> None:
    run_id = await _run(sessionmaker, _drifted(), tmp_path)

    run = await load_run(sessionmaker, run_id)
    assert (run.state, run.stage, run.progress) == ("succeeded", "done", 100)
    assert (run.found_count, run.new_count, run.auto_resolved_count) == (2, 2, 0)
    assert run.summary is not None
    assert run.summary["amount_mismatch"] == {"count": 1, "amount_minor": {"USD": 500}}
    assert run.summary["status_mismatch"] == {"count": 1, "amount_minor": {"JPY": 98_000}}
    assert run.summary["orphan_in_erp"] == {"count": 0, "amount_minor": {}}
    assert run.finished_at is not None
    assert run.finished_at >= run.started_at
    assert run.input_rows is not None
    assert run.input_rows["erp_invoices"] == 7
    assert run.snapshot_dir == str(tmp_path / "runs" / str(run_id))
    assert (Path(run.snapshot_dir) / "billing_invoices.parquet").is_file()

    found = await _mismatches(sessionmaker)
    amount = found["amount_mismatch"]
    assert amount.status == "open"
    assert (amount.source_amount_minor, amount.target_amount_minor) == (10_000, 10_500)
    assert amount.correlation_id == "cid-in_usd_open"
    assert {"system": "erp", "object_type": "invoice", "external_id": "100"} in amount.refs
    # Offline, from the kept Parquet alone, the run finds the same differences.
    offline = rerun_offline(Path(run.snapshot_dir), period=PERIOD, tolerance=Tolerance(1))
    assert sorted(offline.findings.column("fingerprint").to_pylist()) == sorted(
        m.fingerprint for m in found.values()
    )


async def test_rerunning_a_period_keeps_the_same_mismatches_and_ids(
    sessionmaker: SM, tmp_path: Path
) -> None:
    await _run(sessionmaker, _drifted(), tmp_path)
    first = {
        k: (m.id, m.status, m.first_run_id) for k, m in (await _mismatches(sessionmaker)).items()
    }
    second_run = await _run(sessionmaker, _drifted(), tmp_path)

    again = await _mismatches(sessionmaker)
    assert {k: (m.id, m.status, m.first_run_id) for k, m in again.items()} == first
    assert {m.last_run_id for m in again.values()} == {second_run}
    run = await load_run(sessionmaker, second_run)
    assert (run.found_count, run.new_count, run.auto_resolved_count) == (2, 0, 0)


async def test_a_fixed_difference_is_auto_resolved_and_reopens_if_it_returns(
    sessionmaker: SM, tmp_path: Path
) -> None:
    await _run(sessionmaker, _drifted(), tmp_path)
    fixed = _drifted()
    fixed.row("erp_invoices", external_id="in_usd_open")["amount_minor"] = 10_000
    fixing_run = await _run(sessionmaker, fixed, tmp_path)

    found = await _mismatches(sessionmaker)
    assert found["amount_mismatch"].status == "auto_resolved"
    assert found["amount_mismatch"].resolved_run_id == fixing_run
    assert found["status_mismatch"].status == "open"
    assert (await load_run(sessionmaker, fixing_run)).auto_resolved_count == 1

    await _run(sessionmaker, _drifted(), tmp_path)
    back = (await _mismatches(sessionmaker))["amount_mismatch"]
    assert (back.id, back.status, back.resolved_run_id) == (
        found["amount_mismatch"].id,
        "open",
        None,
    )


async def test_a_system_left_out_of_a_run_does_not_auto_resolve_its_mismatches(
    sessionmaker: SM, tmp_path: Path
) -> None:
    world = clean_world()
    world.row("crm_deals", deal_id="deal_sub_usd")["amount_minor"] = 1
    await _run(sessionmaker, world, tmp_path)
    without_crm = clean_world()
    del without_crm.tables["crm_deals"]
    await _run(sessionmaker, without_crm, tmp_path)
    assert (await _mismatches(sessionmaker))["crm_contract_value_mismatch"].status == "open"


async def test_a_resolution_holds_until_the_difference_changes(
    sessionmaker: SM, tmp_path: Path
) -> None:
    await _run(sessionmaker, _drifted(), tmp_path)
    target = (await _mismatches(sessionmaker))["amount_mismatch"]
    async with sessionmaker.begin() as session:
        resolved = await repository.resolve(
            session, target.id, by="fin", note="credit memo issued in the ERP", now=utc_now()
        )
        assert resolved.status == "resolved"
    async with sessionmaker.begin() as session:
        with pytest.raises(MismatchNotOpen):
            await repository.resolve(session, target.id, by="fin", note="again", now=utc_now())

    await _run(sessionmaker, _drifted(), tmp_path)
    same = (await _mismatches(sessionmaker))["amount_mismatch"]
    assert (same.status, same.resolved_by, same.resolution_note) == (
        "resolved",
        "fin",
        "credit memo issued in the ERP",
    )

    worse = _drifted()
    worse.row("erp_invoices", external_id="in_usd_open")["amount_minor"] = 12_000
    await _run(sessionmaker, worse, tmp_path)
    reopened = (await _mismatches(sessionmaker))["amount_mismatch"]
    assert (reopened.id, reopened.status, reopened.amount_at_risk_minor) == (
        target.id,
        "open",
        2_000,
    )


async def test_a_failing_source_leaves_a_failed_run_with_its_error(
    sessionmaker: SM, tmp_path: Path
) -> None:
    broken = ParquetDirectorySource(tmp_path / "nowhere", tables=["billing_invoices"])
    with pytest.raises(RunFailed) as failed:
        await run_reconciliation(
            sessionmaker,
            period=PERIOD,
            sources=[broken],
            options=RunOptions(runs_dir=tmp_path / "runs"),
            trigger="test",
        )
    run = await load_run(sessionmaker, failed.value.run_id)
    assert run.state == "failed"
    assert run.error is not None
    assert "billing_invoices.parquet" in run.error
    # A failed run no longer blocks the period.
    await _run(sessionmaker, clean_world(), tmp_path)


async def _start(
    sessionmaker: SM, *, now: datetime | None = None, stale_after: timedelta | None = None
) -> ReconciliationRun:
    """repository.start_run of PERIOD in a transaction of its own."""
    extra = {} if stale_after is None else {"stale_after": stale_after}
    async with sessionmaker.begin() as session:
        return await repository.start_run(
            session,
            period=PERIOD,
            trigger="test",
            requested_by=None,
            tolerance_minor=0,
            now=now or utc_now(),
            **extra,
        )


async def test_a_period_being_reconciled_refuses_a_second_run(sessionmaker: SM) -> None:
    first = await _start(sessionmaker)
    with pytest.raises(RunInProgress) as busy:
        await _start(sessionmaker)
    assert busy.value.run_id == first.id


async def test_a_run_left_running_by_a_killed_process_stops_blocking_once_stale(
    sessionmaker: SM, tmp_path: Path
) -> None:
    stuck = await _start(sessionmaker, now=utc_now() - timedelta(hours=2))
    options = RunOptions(runs_dir=tmp_path / "runs", stale_after=timedelta(minutes=2))

    run_id = await run_reconciliation(
        sessionmaker,
        period=PERIOD,
        sources=[_snapshot(clean_world(), tmp_path / "in")],
        options=options,
        trigger="test",
    )

    abandoned = await load_run(sessionmaker, stuck.id)
    assert abandoned.state == "failed"
    assert abandoned.error is not None
    assert abandoned.error.startswith(
        f"abandoned: no heartbeat since {stuck.started_at.isoformat()}"
    )
    assert abandoned.finished_at is not None
    assert (await load_run(sessionmaker, run_id)).state == "succeeded"


class _Hanging:
    """A system that never answers, so the run can be stopped in the middle."""

    name = "hanging"

    def __init__(self) -> None:
        self.asked = asyncio.Event()

    async def fetch(self, period: str) -> Snapshot:
        self.asked.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def _hanging_run(
    sessionmaker: SM, tmp_path: Path, options: RunOptions | None = None
) -> asyncio.Task[int]:
    """A run in its own task, once it is waiting on a system that never answers."""
    hanging = _Hanging()
    task = asyncio.create_task(
        run_reconciliation(
            sessionmaker,
            period=PERIOD,
            sources=[hanging],
            options=options or RunOptions(runs_dir=tmp_path / "runs"),
            trigger="cron",
        )
    )
    await asyncio.wait_for(hanging.asked.wait(), timeout=10)
    return task


async def test_a_run_cancelled_by_its_process_stopping_is_failed_and_frees_the_period(
    sessionmaker: SM, tmp_path: Path
) -> None:
    task = await _hanging_run(sessionmaker, tmp_path)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async with sessionmaker() as session:
        [run] = await session.scalars(select(ReconciliationRun))
    assert (run.state, run.error) == ("failed", "cancelled: the process running it was stopping")
    # The next run of the period is not refused as "in progress".
    after = await _run(sessionmaker, clean_world(), tmp_path)
    assert (await load_run(sessionmaker, after)).state == "succeeded"


async def test_a_working_run_keeps_beating_and_keeps_its_period(
    sessionmaker: SM, tmp_path: Path
) -> None:
    stale_after = timedelta(seconds=0.4)
    options = RunOptions(runs_dir=tmp_path / "runs", stale_after=stale_after)
    task = await _hanging_run(sessionmaker, tmp_path, options)
    try:
        await asyncio.sleep(1.0)  # more than twice stale_after since it started

        with pytest.raises(RunInProgress):
            await _start(sessionmaker, stale_after=stale_after)
        async with sessionmaker() as session:
            [run] = await session.scalars(select(ReconciliationRun))
        assert run.heartbeat_at is not None
        assert run.heartbeat_at > run.started_at + stale_after
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
