"""The schedule reconciles the current month, every month whose transactions changed within its
window, the one reconciled longest ago first, and the month reconciled longest ago, skipping a
month someone else is already reconciling."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.clock import new_correlation_id, utc_now
from lineage.enums import System, TxState
from lineage.models import BusinessTransaction, ReconciliationRun
from reconciliation import repository
from reconciliation.schedule import periods_due, reconcile_due
from reconciliation.settings import ReconciliationSettings

SM = async_sessionmaker[AsyncSession]
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


async def _changed(sessionmaker: SM, period: str | None, at: datetime, state: TxState) -> None:
    async with sessionmaker.begin() as session:
        session.add(
            BusinessTransaction(
                correlation_id=new_correlation_id(),
                workflow="invoice_generated",
                state=state,
                source_system=System.BILLING,
                event_type="invoice.finalized",
                invoice_id=f"in_{period}_{at.timestamp()}",
                amount_minor=1_000,
                currency="USD",
                period=period,
                received_at=at - timedelta(days=40),
                updated_at=at,
            )
        )


async def test_the_current_month_then_the_months_changed_within_the_window(
    sessionmaker: SM,
) -> None:
    await _changed(sessionmaker, "2026-09", NOW - timedelta(hours=2), TxState.POSTED)
    await _changed(sessionmaker, "2026-10", NOW - timedelta(minutes=1), TxState.POSTED)
    await _changed(sessionmaker, "2027-02", NOW, TxState.EXCEPTION)
    await _changed(sessionmaker, "2026-11", NOW, TxState.PENDING)
    await _changed(sessionmaker, None, NOW, TxState.POSTED)
    since = NOW - timedelta(minutes=30)

    async with sessionmaker() as session:
        due = await periods_due(session, now=NOW, since=since, limit=6)
        capped = await periods_due(session, now=NOW, since=since, limit=2)
        quiet = await periods_due(session, now=NOW, since=NOW + timedelta(seconds=1), limit=6)

    assert due == ["2026-11", "2027-02", "2026-10"]
    assert capped == ["2026-11", "2027-02"]
    assert quiet == ["2026-11"]


async def _reconciled(sessionmaker: SM, period: str, at: datetime) -> None:
    async with sessionmaker.begin() as session:
        await repository.start_run(
            session, period=period, trigger="cron", requested_by="schedule", tolerance_minor=0,
            now=at,
        )  # fmt: skip


async def test_the_month_reconciled_longest_ago_comes_last_one_per_run(sessionmaker: SM) -> None:
    # No transaction changes when the ERP is edited by hand: only a month's turn finds that.
    await _reconciled(sessionmaker, "2026-05", NOW - timedelta(days=3))
    await _reconciled(sessionmaker, "2026-05", NOW - timedelta(hours=1))
    await _reconciled(sessionmaker, "2026-06", NOW - timedelta(days=2))
    await _reconciled(sessionmaker, "2026-07", NOW - timedelta(days=2))
    await _reconciled(sessionmaker, "2026-10", NOW - timedelta(days=9))
    await _changed(sessionmaker, "2026-10", NOW, TxState.POSTED)
    await _changed(sessionmaker, "2026-09", NOW, TxState.POSTED)
    since = NOW - timedelta(minutes=30)

    async with sessionmaker() as session:
        due = await periods_due(session, now=NOW, since=since, limit=6)
        tight = await periods_due(session, now=NOW, since=since, limit=3)
        two = await periods_due(session, now=NOW, since=since, limit=2)
    await _reconciled(sessionmaker, "2026-07", NOW)
    async with sessionmaker() as session:
        after = await periods_due(session, now=NOW, since=since, limit=6)

    # 2026-10 is due as changed, after 2026-09, which was never reconciled, and as the stalest
    # when 2026-09 takes the one place for changed months; of 06 and 07, started at the same
    # moment, the later month goes first.
    assert due == ["2026-11", "2026-09", "2026-10", "2026-07"]
    assert tight == ["2026-11", "2026-09", "2026-10"]
    assert two == ["2026-11", "2026-09"]
    assert after == ["2026-11", "2026-09", "2026-10", "2026-06"]


async def test_every_changed_month_gets_its_turn_however_many_changed(sessionmaker: SM) -> None:
    """A backfill touches six months and the schedule has one slot for changed months: each
    run takes the changed month reconciled longest ago, so all six are reconciled within six
    runs, while they are still in the window (newest first gave the newest every time)."""
    months = [f"2026-0{m}" for m in range(4, 10)]
    for month in months:
        await _changed(sessionmaker, month, NOW - timedelta(minutes=5), TxState.POSTED)
    reconciled: list[str] = []
    for turn in range(len(months)):
        async with sessionmaker() as session:
            due = await periods_due(session, now=NOW, since=NOW - timedelta(hours=1), limit=3)
        # Minutes apart, so that the last turn's runs, never finished here, count as abandoned.
        for period in due:
            await _reconciled(sessionmaker, period, NOW + timedelta(minutes=5 * turn))
        reconciled.append(due[1])

    assert sorted(reconciled) == months


async def test_each_due_month_is_reconciled_and_one_already_running_is_left_alone(
    sessionmaker: SM, database_url: str, tmp_path: Path
) -> None:
    now = utc_now()
    current = now.strftime("%Y-%m")
    await _changed(sessionmaker, "2031-01", now, TxState.POSTED)
    await _changed(sessionmaker, "2031-02", now, TxState.POSTED)
    async with sessionmaker.begin() as session:
        busy = await repository.start_run(
            session, period="2031-02", trigger="api", requested_by="finance", tolerance_minor=0,
            now=now,
        )  # fmt: skip
    settings = ReconciliationSettings(database_url=database_url, reconciliation_dir=tmp_path)

    made = await reconcile_due(
        sessionmaker, settings, now=now, window=timedelta(minutes=2), limit=6
    )

    async with sessionmaker() as session:
        runs = {r.id: r for r in await session.scalars(select(ReconciliationRun))}
    assert [(runs[i].period, runs[i].state, runs[i].trigger) for i in made] == [
        (current, "succeeded", "cron"),
        ("2031-01", "succeeded", "cron"),
    ]
    assert runs[busy.id].state == "running"
