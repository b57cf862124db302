"""SLA figures computed by the database against the same figures counted row by row in Python.

Seeded rows are built to sit on every edge of the definitions: latencies tied with each other
and equal to the target (met) or a microsecond past it (breached), transactions exactly as old
as their target (undecided) or a microsecond older, done states without a completed_at,
latencies over a day, amounts or currencies missing, several currencies, open and resolved
exceptions, and transactions with no step, one target, or several.
"""

import random
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage import sla
from lineage.enums import ExceptionStatus, RunState, StepState, System, TxState
from lineage.models import BusinessTransaction, ExceptionItem, WorkflowRun, WorkflowStep
from lineage.sla_sql import nearest_rank
from tests.lineage import sla_reference as ref

NOW = datetime(2026, 11, 20, 12, 0, 0, 500_000, tzinfo=UTC)
TARGETS = {"invoice_generated": 300.0, "renewal": 60.0, "usage_summary": 90.5}
DEFAULT_TARGET_S = 120.0
WORKFLOWS = [*TARGETS, "payment_failed"]  # the last one runs on the default target
US = timedelta(microseconds=1)
STATES = [s for s in TxState if s is not TxState.IGNORED]
CURRENCIES = ["USD", "EUR", "JPY", None, ""]
SYSTEMS = [System.ERP, System.CRM, System.PROVISIONING]


def _target(workflow: str) -> float:
    return TARGETS.get(workflow, DEFAULT_TARGET_S)


def _latency(rng: random.Random, workflow: str) -> timedelta:
    target = timedelta(seconds=_target(workflow))
    return rng.choice(
        [
            timedelta(seconds=rng.choice([5, 30, 30, 30, 60, 60, 90])),  # many ties
            target,  # met, just
            target + US,  # breached by a microsecond
            target - US,
            timedelta(seconds=rng.uniform(0, 600)),  # microsecond precision
            timedelta(days=1, hours=2, microseconds=rng.randrange(1_000_000)),
        ]
    )


def _received(rng: random.Random, workflow: str) -> datetime:
    age = timedelta(seconds=_target(workflow))
    return NOW - rng.choice(
        [
            age,  # exactly as old as the target: undecided
            age + US,  # a microsecond older: past it
            age - US,
            timedelta(seconds=rng.uniform(0, 3 * 86400)),
            # On an hour bucket's edge (buckets start on whole hours; NOW is half a second
            # past one), and a microsecond before it.
            timedelta(hours=rng.randrange(1, 72), microseconds=500_000),
            timedelta(hours=rng.randrange(1, 72), microseconds=500_000) - US,
        ]
    )


async def _seed(session: AsyncSession, seed: int, count: int) -> None:
    rng = random.Random(seed)
    for i in range(count):
        workflow = rng.choice(WORKFLOWS)
        state = rng.choice(STATES)
        received = _received(rng, workflow)
        completed = None
        if state in {TxState.POSTED, TxState.MANUALLY_RESOLVED, TxState.REVERSED}:
            # A few done transactions lack completed_at: they count as not done.
            completed = None if rng.random() < 0.1 else received + _latency(rng, workflow)
        cid = f"sla-{seed}-{i:05d}"
        session.add(
            BusinessTransaction(
                correlation_id=cid,
                workflow=workflow,
                state=state,
                source_system=System.BILLING,
                event_type="invoice.finalized",
                amount_minor=None if rng.random() < 0.1 else rng.randrange(1, 100_000),
                currency=rng.choice(CURRENCIES),
                received_at=received,
                updated_at=received,
                completed_at=completed,
            )
        )
        await session.flush()
        await _add_steps(session, rng, cid)
    # Outside the window or without a workflow: never counted.
    outside: list[tuple[str | None, datetime]] = [
        ("invoice_generated", NOW - timedelta(days=4)),
        (None, NOW - timedelta(hours=1)),
    ]
    for i, (workflow_or_none, received) in enumerate(outside):
        session.add(
            BusinessTransaction(
                correlation_id=f"sla-{seed}-out-{i}",
                workflow=workflow_or_none,
                state=TxState.POSTED if workflow_or_none else TxState.IGNORED,
                source_system=System.BILLING,
                event_type="invoice.finalized",
                received_at=received,
                updated_at=received,
                completed_at=received + timedelta(seconds=1),
            )
        )


async def _add_steps(session: AsyncSession, rng: random.Random, cid: str) -> None:
    systems = rng.choice([[], [System.ERP], [System.ERP, System.ERP], rng.sample(SYSTEMS, 2)])
    if not systems:
        return
    run = WorkflowRun(correlation_id=cid, number=1, trigger="initial", state=RunState.RUNNING)
    session.add(run)
    await session.flush()
    for n, system in enumerate(systems):
        step = WorkflowStep(
            run_id=run.id,
            correlation_id=cid,
            name=f"{system.value}.step_{n}",
            target_system=system,
            state=StepState.SUCCEEDED,
            idempotency_key=f"{cid}:{n}",
        )
        session.add(step)
        await session.flush()
        for status in rng.choice([[], [], [ExceptionStatus.OPEN], [ExceptionStatus.RESOLVED],
                                  [ExceptionStatus.OPEN, ExceptionStatus.OPEN]]):  # fmt: skip
            session.add(
                ExceptionItem(
                    correlation_id=cid,
                    step_id=step.id,
                    status=status,
                    classification="terminal",
                    message="refused",
                )
            )


@pytest.fixture
async def seeded(sessionmaker: async_sessionmaker[AsyncSession]) -> list[ref.TxTiming]:
    """400 seeded transactions, and the window's rows as the Python definitions read them."""
    async with sessionmaker.begin() as session:
        await _seed(session, seed=20261126, count=400)
    async with sessionmaker() as session:
        return await ref.load_window(session, since=NOW - timedelta(days=3), until=NOW)


def _plain(figures: list[Any]) -> list[dict[str, Any]]:
    return [asdict(f) for f in figures]


@pytest.mark.parametrize("group_by", ["workflow", "target"])
async def test_summary_matches_the_python_definitions(
    sessionmaker: async_sessionmaker[AsyncSession],
    seeded: list[ref.TxTiming],
    group_by: str,
) -> None:
    since = NOW - timedelta(days=3)
    expected = ref.summary(
        seeded,
        group_by=group_by,
        targets=TARGETS,
        default_target_s=DEFAULT_TARGET_S,
        now=NOW,
        window=NOW - since,
    )

    async with sessionmaker() as session:
        got = await sla.summary(
            session,
            since=since,
            until=NOW,
            group_by="workflow" if group_by == "workflow" else "target",
            targets=TARGETS,
            default_target_s=DEFAULT_TARGET_S,
            now=NOW,
        )

    assert _plain(got) == _plain(expected)
    # The seed reaches the edges the definitions care about, or this comparison proves little.
    assert {g.group for g in got} >= ({*WORKFLOWS} if group_by == "workflow" else {"erp", "none"})
    assert all(g.met and g.breached and g.p99_s for g in got)
    assert sum(len(g.money_at_risk) for g in got) >= 2 * len(got)


@pytest.mark.parametrize("workflow", [None, "usage_summary"])
async def test_timeseries_matches_the_python_definitions(
    sessionmaker: async_sessionmaker[AsyncSession],
    seeded: list[ref.TxTiming],
    workflow: str | None,
) -> None:
    since = NOW - timedelta(days=3)
    rows = [r for r in seeded if workflow is None or r.workflow == workflow]
    expected = ref.timeseries(
        rows,
        since=since,
        until=NOW,
        bucket=timedelta(hours=1),
        targets=TARGETS,
        default_target_s=DEFAULT_TARGET_S,
        now=NOW,
    )

    async with sessionmaker() as session:
        got = await sla.timeseries(
            session,
            since=since,
            until=NOW,
            bucket=timedelta(hours=1),
            targets=TARGETS,
            default_target_s=DEFAULT_TARGET_S,
            now=NOW,
            workflow=workflow,
        )

    assert [(start, asdict(f)) for start, f in got] == [(start, asdict(f)) for start, f in expected]
    assert len(got) == 73
    assert sum(f.total for _, f in got) == len(rows)


async def test_nearest_rank_percentiles_with_ties(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Twenty posted latencies, tied in runs: p50 is the 10th, p95 the 19th, p99 the 20th."""
    latencies = [1.0] * 4 + [2.5] * 6 + [7.0] * 5 + [8.000001] * 4 + [3600.0]
    async with sessionmaker.begin() as session:
        for i, seconds in enumerate(latencies):
            received = NOW - timedelta(hours=2, minutes=i)
            session.add(
                BusinessTransaction(
                    correlation_id=f"ties-{i:02d}",
                    workflow="renewal",
                    state=TxState.POSTED,
                    source_system=System.BILLING,
                    event_type="invoice.finalized",
                    received_at=received,
                    updated_at=received,
                    completed_at=received + timedelta(seconds=seconds),
                )
            )

    async with sessionmaker() as session:
        (renewal,) = await sla.summary(
            session,
            since=NOW - timedelta(hours=24),
            until=NOW,
            group_by="workflow",
            targets=TARGETS,
            default_target_s=DEFAULT_TARGET_S,
            now=NOW,
        )

    assert (renewal.p50_s, renewal.p95_s, renewal.p99_s) == (2.5, 8.000001, 3600.0)
    assert (renewal.total, renewal.posted, renewal.met, renewal.breached) == (20, 20, 19, 1)
    assert renewal.attainment_pct == 95.0
    assert renewal.throughput_per_hour == round(20 / 24, 4)


def test_nearest_rank() -> None:
    assert [nearest_rank(20, p) for p in (50, 95, 99)] == [10, 19, 20]
    assert [nearest_rank(1, p) for p in (50, 95, 99)] == [1, 1, 1]
    assert [nearest_rank(100, p) for p in (50, 95, 99)] == [50, 95, 99]
    assert [nearest_rank(101, p) for p in (50, 95, 99)] == [51, 96, 100]
