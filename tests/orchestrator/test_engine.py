"""The engine's failure paths: retries, budgets, terminal errors, ambiguous outcomes, conflicts."""

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage import runs
from lineage.clock import utc_now
from lineage.enums import AttemptOutcome, ExceptionStatus, StepState, TxState
from lineage.models import BusinessTransaction, ExceptionItem, StepAttempt, WorkflowStep
from orchestrator import engine
from orchestrator.connectors.errors import Conflict, Retryable, Terminal
from orchestrator.deps import WorkerDeps
from orchestrator.engine import Outcome
from tests.dbutil import invoice_transaction, take_lease
from tests.fakes import ScriptedErp, WorkerKilled

DepsFactory = Callable[..., WorkerDeps]


async def _run_until_settled(deps: WorkerDeps, correlation_id: str) -> list[Outcome]:
    """Run the engine as the deferred wake-ups would, without waiting for the delays."""
    outcomes = []
    for _ in range(20):
        async with deps.sessionmaker.begin() as session:
            tx = await session.get(BusinessTransaction, correlation_id)
            assert tx is not None
            tx.next_attempt_at = None
        outcome = await engine.run_transaction(deps, correlation_id)
        outcomes.append(outcome)
        if outcome is not Outcome.RETRY_SCHEDULED:
            return outcomes
    raise AssertionError(f"did not settle: {outcomes}")


async def _attempts(
    sessionmaker: async_sessionmaker[AsyncSession], correlation_id: str
) -> list[StepAttempt]:
    async with sessionmaker() as session:
        return list(
            await session.scalars(
                select(StepAttempt)
                .where(StepAttempt.correlation_id == correlation_id)
                .order_by(StepAttempt.number)
            )
        )


async def _open_item(sessionmaker: async_sessionmaker[AsyncSession]) -> ExceptionItem:
    async with sessionmaker() as session:
        [item] = list(await session.scalars(select(ExceptionItem)))
    return item


async def test_retryable_failures_then_success_post_once(
    make_deps: DepsFactory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    erp = ScriptedErp(
        failures=[
            Retryable("reset", classification="connection"),
            Retryable("503", http_status=503, classification="server"),
        ]
    )
    deps = make_deps(erp)
    correlation_id = await invoice_transaction(sessionmaker, "in_retry")

    outcomes = await _run_until_settled(deps, correlation_id)

    assert outcomes == [Outcome.RETRY_SCHEDULED, Outcome.RETRY_SCHEDULED, Outcome.POSTED]
    attempts = await _attempts(sessionmaker, correlation_id)
    assert [(a.outcome, a.http_status) for a in attempts] == [
        (AttemptOutcome.FAILED, None),
        (AttemptOutcome.FAILED, 503),
        (AttemptOutcome.SUCCEEDED, 200),
    ]
    # Every post carried the same idempotency key; lookups preceded the re-posts.
    assert {ctx.idempotency_key for ctx in erp.posts} == {f"{correlation_id}:erp.post_invoice"}
    assert erp.lookups == 2


async def test_ambiguous_failure_is_looked_up_not_posted_again(
    make_deps: DepsFactory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # The ERP commits, then the response is lost.
    erp = ScriptedErp(
        failures=[Retryable("read timeout", classification="timeout")], commit_before_fail=True
    )
    deps = make_deps(erp)
    correlation_id = await invoice_transaction(sessionmaker, "in_ambiguous")

    await _run_until_settled(deps, correlation_id)

    assert len(erp.posts) == 1
    assert [a.outcome for a in await _attempts(sessionmaker, correlation_id)] == [
        AttemptOutcome.FAILED,
        AttemptOutcome.FOUND_EXISTING,
    ]


async def test_exhausted_budget_becomes_an_exception(
    make_deps: DepsFactory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    erp = ScriptedErp(failures=[Retryable("down", http_status=503) for _ in range(5)])
    deps = make_deps(erp, max_attempts=3)
    correlation_id = await invoice_transaction(sessionmaker, "in_budget")

    outcomes = await _run_until_settled(deps, correlation_id)

    assert outcomes[-1] is Outcome.EXCEPTION
    assert len(erp.posts) == 3
    async with sessionmaker() as session:
        tx = await session.get(BusinessTransaction, correlation_id)
        [item] = list(await session.scalars(select(ExceptionItem)))
        step = await session.scalar(select(WorkflowStep))
    assert tx is not None
    assert step is not None
    assert tx.state is TxState.EXCEPTION
    assert tx.lease_owner is None
    assert item.classification == "retry_budget_exhausted"
    assert item.status is ExceptionStatus.OPEN
    assert step.state is StepState.FAILED_TERMINAL


async def _run_through_deaths(deps: WorkerDeps, correlation_id: str) -> list[Outcome | str]:
    """_run_until_settled, where a run whose worker was killed mid-call (the attempt left
    unfinished and the lease held) is followed, once its lease has run out, by the next
    holder's run."""
    outcomes: list[Outcome | str] = []
    for _ in range(10):
        try:
            outcomes += await _run_until_settled(deps, correlation_id)
            return outcomes
        except WorkerKilled:
            outcomes.append("died")
        async with deps.sessionmaker.begin() as session:
            tx = await session.get(BusinessTransaction, correlation_id)
            assert tx is not None
            tx.lease_expires_at = utc_now() - timedelta(seconds=1)
    raise AssertionError(f"did not settle: {outcomes}")


async def test_a_budget_the_target_spent_is_not_blamed_on_the_death_that_ended_it(
    make_deps: DepsFactory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    down = Retryable("down", http_status=503)
    erp = ScriptedErp(failures=[down, down, WorkerKilled()])
    deps = make_deps(erp, max_attempts=3)
    correlation_id = await invoice_transaction(sessionmaker, "in_mostly_down")

    outcomes = await _run_through_deaths(deps, correlation_id)

    # Two 503s spent two attempts within one settling loop; the third attempt's job died.
    assert outcomes == ["died", Outcome.EXCEPTION]
    assert [
        (a.http_status, a.error_message) for a in await _attempts(sessionmaker, correlation_id)
    ] == [
        (503, "down"),
        (503, "down"),
        (None, runs.ABANDONED_ATTEMPT),
    ]
    item = await _open_item(sessionmaker)
    assert item.classification == "retry_budget_exhausted"
    assert "after 3 attempts, 1 of them ended with their worker" in item.message


async def test_a_budget_every_attempt_of_which_died_is_a_worker_crash(
    make_deps: DepsFactory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    erp = ScriptedErp(failures=[WorkerKilled() for _ in range(3)])
    deps = make_deps(erp, max_attempts=3)
    correlation_id = await invoice_transaction(sessionmaker, "in_poison")

    outcomes = await _run_through_deaths(deps, correlation_id)

    assert outcomes == ["died", "died", "died", Outcome.EXCEPTION]
    assert len(erp.posts) == 3
    item = await _open_item(sessionmaker)
    assert item.classification == "worker_crash"
    assert "died during each of 3 attempts" in item.message


async def test_terminal_error_goes_straight_to_the_queue(
    make_deps: DepsFactory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    erp = ScriptedErp(failures=[Terminal("entity cus_1 does not exist", http_status=400)])
    deps = make_deps(erp)
    correlation_id = await invoice_transaction(sessionmaker, "in_terminal")

    outcomes = await _run_until_settled(deps, correlation_id)

    assert outcomes == [Outcome.EXCEPTION]
    assert len(erp.posts) == 1
    item = await _open_item(sessionmaker)
    assert item.classification == "validation"
    assert "cus_1 does not exist" in item.message


async def test_conflict_is_resolved_by_lookup(
    make_deps: DepsFactory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    erp = ScriptedErp(
        failures=[Conflict("duplicate externalId", http_status=409)], commit_before_fail=True
    )
    deps = make_deps(erp)
    correlation_id = await invoice_transaction(sessionmaker, "in_conflict")

    assert await _run_until_settled(deps, correlation_id) == [Outcome.POSTED]
    [attempt] = await _attempts(sessionmaker, correlation_id)
    assert attempt.outcome is AttemptOutcome.FOUND_EXISTING


async def test_a_held_lease_keeps_a_second_worker_out(
    make_deps: DepsFactory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    deps = make_deps(ScriptedErp())
    correlation_id = await invoice_transaction(sessionmaker, "in_leased")
    now = utc_now()
    assert await take_lease(sessionmaker, correlation_id, "other-worker", now) is not None

    assert await engine.run_transaction(deps, correlation_id) is Outcome.NOT_CLAIMED

    assert await take_lease(sessionmaker, correlation_id, "third", now + timedelta(seconds=61))
