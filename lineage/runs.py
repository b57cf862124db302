"""Write side used by the workflow engine: claims, runs, steps, attempts, refs and exceptions."""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Required, TypedDict, TypeVar, Unpack

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from lineage import driver
from lineage.enums import (
    ACTIVE_STATES,
    AttemptOutcome,
    ErrorClass,
    ExceptionStatus,
    RunState,
    StepState,
    System,
    TxState,
)
from lineage.hot_path import (
    ATTEMPTS,
    CLAIM,
    FINISH,
    FINISH_ATTEMPT,
    FINISH_STEP,
    FIRST_ATTEMPT,
    FIRST_CLAIM,
    REFS,
    RUNS,
    STEPS,
    SUCCESS,
    TX,
    autocommit_on_postgres,
    param,
)
from lineage.models import (
    BusinessTransaction,
    ExceptionItem,
    StepAttempt,
    WorkflowRun,
    WorkflowStep,
)
from lineage.upsert import insert_if_absent

# The hot path's statements are built once, with bound parameters (lineage/hot_path.py says why).

_COUNT_RUN = (
    update(TX)
    .where(TX.c.correlation_id == param(TX.c.correlation_id))
    .values(run_count=param(TX.c.run_count), updated_at=param(TX.c.updated_at, "now"))
)
_INSERT_RUN = insert(RUNS).returning(RUNS.c.id)
_INSERT_STEP = insert(STEPS).returning(STEPS.c.id)
_INSERT_ATTEMPT = insert(ATTEMPTS).returning(ATTEMPTS.c.id)
_SETTLE = (
    update(TX)
    .where(TX.c.correlation_id == param(TX.c.correlation_id))
    .values(
        state=param(TX.c.state),
        state_reason=param(TX.c.state_reason),
        lease_owner=None,
        lease_expires_at=None,
        next_attempt_at=param(TX.c.next_attempt_at),
        updated_at=param(TX.c.updated_at),
        completed_at=param(TX.c.completed_at),
    )
)
_END_RUN = (
    update(RUNS)
    .where(RUNS.c.id == param(RUNS.c.id))
    .values(state=param(RUNS.c.state), ended_at=param(RUNS.c.ended_at))
)

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Claim:
    """A transaction this worker holds the lease on, with its current run."""

    transaction: BusinessTransaction
    run: WorkflowRun
    step_states: dict[str, StepState]
    # What this run's succeeded steps handed on, by step name.
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)


def _first_run(correlation_id: str, now: datetime) -> dict[str, Any]:
    """The row of a transaction's first run, as FIRST_CLAIM inserts it."""
    return {
        "correlation_id": correlation_id,
        "number": 1,
        "trigger": "initial",
        "state": RunState.RUNNING,
        "started_at": now,
        "force_new_posting": False,
    }


async def take(
    sessionmaker: async_sessionmaker[AsyncSession],
    correlation_id: str,
    *,
    owner: str,
    lease_until: datetime,
    now: datetime,
    then: Callable[[AsyncSession, Claim], Awaitable[_T]],
) -> tuple[Claim, _T] | None:
    """Take the lease on an active, due transaction and run `then`, the reads its run needs
    before the first call, on the same session; None if it is done, leased or not yet due.

    One conditional UPDATE decides, so two workers woken for the same transaction never both
    run its steps.

    On PostgreSQL most claims are first claims, and a first claim is one statement
    (hot_path.FIRST_CLAIM, sent by asyncpg itself: lineage/driver.py): it commits on its own,
    and `then` reads in autocommit after it. At READ COMMITTED each statement sees what was
    committed when it began, in a transaction or not, so the reads are the ones a transaction
    would make; BEGIN and COMMIT were two of the claim's four round trips. A transaction that
    has run before is claimed in a transaction, as on SQLite: its run is counted and opened in
    more than one statement.
    """
    params = _lease_params(correlation_id, owner=owner, lease_until=lease_until, now=now)
    engine = sessionmaker.kw["bind"]
    if driver.is_postgres(engine):
        first = await _first_claim(engine, params, now)
        if first is not None:
            async with sessionmaker() as session:
                await autocommit_on_postgres(session)
                return first, await then(session, first)
    async with sessionmaker.begin() as session:
        claimed = await _claim_again(session, params, now)
        return None if claimed is None else (claimed, await then(session, claimed))


def _lease_params(
    correlation_id: str, *, owner: str, lease_until: datetime, now: datetime
) -> dict[str, Any]:
    return {
        "p_correlation_id": correlation_id,
        "p_now": now,
        "p_lease_owner": owner,
        "p_lease_expires_at": lease_until,
    }


async def _first_claim(engine: AsyncEngine, params: dict[str, Any], now: datetime) -> Claim | None:
    """On PostgreSQL, the lease and run 1 of a transaction never claimed, in one statement; None
    (and nothing written) for any other."""
    rows = await driver.fetch_mappings(engine, FIRST_CLAIM, params)
    if not rows:
        return None
    (values,) = rows
    run = WorkflowRun(id=values.pop("run_id"), **_first_run(params["p_correlation_id"], now))
    taken = BusinessTransaction(**values)
    # As a row loaded by a session that has closed: detached, its values the database's.
    make_transient_to_detached(taken)
    return Claim(taken, run, {}, {})


async def _claim_again(
    session: AsyncSession, params: dict[str, Any], now: datetime
) -> Claim | None:
    correlation_id = params["p_correlation_id"]
    row = await session.scalar(CLAIM, params)
    if row is None:
        return None
    # A transaction that never had a run has none running; a run opened here has no steps yet.
    # A first claim skips both reads (docs/performance.md, "Fewer engine round trips").
    run = (
        await session.scalar(
            select(WorkflowRun)
            .where(
                WorkflowRun.correlation_id == correlation_id,
                WorkflowRun.state == RunState.RUNNING,
            )
            .order_by(WorkflowRun.number.desc())
            .limit(1)
        )
        if row.run_count
        else None
    )
    if run is None:
        number = row.run_count + 1
        await session.execute(
            _COUNT_RUN,
            {"p_correlation_id": correlation_id, "p_run_count": number, "p_now": now},
        )
        # The claimed row stays as the database now has it, without a flush of its own.
        set_committed_value(row, "run_count", number)
        values = _first_run(correlation_id, now) | {
            "number": number,
            "trigger": "initial" if number == 1 else "resume",
        }
        run_id = await session.scalar(_INSERT_RUN, values)
        run = WorkflowRun(id=run_id, **values)
        return Claim(row, run, {}, {})
    steps = list(
        await session.execute(
            select(WorkflowStep.name, WorkflowStep.state, WorkflowStep.output).where(
                WorkflowStep.run_id == run.id
            )
        )
    )
    outputs = {name: output for name, state, output in steps if output is not None}
    return Claim(row, run, {name: state for name, state, _ in steps}, outputs)


async def earlier_outputs(session: AsyncSession, correlation_id: str) -> dict[str, dict[str, Any]]:
    """The latest output of each step across the transaction's runs, for a replay that starts
    after the steps that produced them."""
    rows = await session.execute(
        select(WorkflowStep.name, WorkflowStep.output)
        .where(
            WorkflowStep.correlation_id == correlation_id,
            WorkflowStep.state == StepState.SUCCEEDED,
            WorkflowStep.output.is_not(None),
        )
        .order_by(WorkflowStep.id)
    )
    return {name: output for name, output in rows.all()}  # noqa: C416 - Row is not a pair


def _new_step(
    run_id: int,
    correlation_id: str,
    name: str,
    target: System,
    idempotency_key: str,
    external_id: str | None,
    now: datetime,
) -> dict[str, Any]:
    """A new step's row (the columns of hot_path.NEW_STEP_COLUMNS), inserted with its first attempt
    counted: no UPDATE of the row just written."""
    return {
        "run_id": run_id,
        "correlation_id": correlation_id,
        "name": name,
        "target_system": target,
        "state": StepState.RUNNING,
        "idempotency_key": idempotency_key,
        "external_id": external_id,
        "started_at": now,
        "attempt_count": 1,
    }


async def start_attempt(
    session: AsyncSession,
    *,
    run_id: int,
    correlation_id: str,
    name: str,
    target: System,
    idempotency_key: str,
    external_id: str | None,
    now: datetime,
    new: bool = False,
) -> tuple[WorkflowStep, StepAttempt]:
    """Record that an attempt of a step begins, before the call is made.

    `new`: the caller knows the run has no row for this step yet (from its claim), so it is
    inserted without looking for it first.
    """
    step = (
        None
        if new
        else await session.scalar(
            select(WorkflowStep).where(WorkflowStep.run_id == run_id, WorkflowStep.name == name)
        )
    )
    if step is None:
        values = _new_step(run_id, correlation_id, name, target, idempotency_key, external_id, now)
        step = WorkflowStep(id=await session.scalar(_INSERT_STEP, values), **values)
    else:
        step.attempt_count += 1
        step.state = StepState.RUNNING
        step.next_attempt_at = None
        await session.flush()
    values = {
        "step_id": step.id,
        "correlation_id": correlation_id,
        "number": step.attempt_count,
        "started_at": now,
    }
    attempt = StepAttempt(id=await session.scalar(_INSERT_ATTEMPT, values), **values)
    return step, attempt


async def record_first_attempt(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    run_id: int,
    correlation_id: str,
    name: str,
    target: System,
    idempotency_key: str,
    external_id: str | None,
    now: datetime,
) -> tuple[WorkflowStep, StepAttempt]:
    """Commit a new step and its first attempt, before the call (what start_attempt with
    `new` does in a transaction of its own).

    On PostgreSQL one statement in autocommit, sent by asyncpg itself (lineage/driver.py): one
    round trip where BEGIN, two INSERTs and COMMIT were four, for every step of every
    transaction. SQLite has no data-modifying CTEs.
    """
    values = _new_step(run_id, correlation_id, name, target, idempotency_key, external_id, now)
    engine = sessionmaker.kw["bind"]
    if driver.is_postgres(engine):
        # Atomic as one statement: both rows are committed, or neither is.
        ((attempt_id, step_id),) = await driver.fetch(
            engine, FIRST_ATTEMPT, {f"p_{k}": v for k, v in values.items()}
        )
        attempt = StepAttempt(
            id=attempt_id, step_id=step_id, correlation_id=correlation_id, number=1,
            started_at=now,
        )  # fmt: skip
        return WorkflowStep(id=step_id, **values), attempt
    async with sessionmaker.begin() as session:
        return await start_attempt(
            session,
            run_id=run_id,
            correlation_id=correlation_id,
            name=name,
            target=target,
            idempotency_key=idempotency_key,
            external_id=external_id,
            now=now,
            new=True,
        )


# A step in one of these states is over: it gets its ended_at.
_ENDED = frozenset({StepState.SUCCEEDED, StepState.SKIPPED, StepState.FAILED_TERMINAL})


class AttemptEnd(TypedDict, total=False):
    """How an attempt ended, as finish_attempt writes it onto the attempt and its step."""

    now: Required[datetime]
    outcome: Required[AttemptOutcome]
    step_state: Required[StepState]
    error_class: ErrorClass | None
    error_message: str | None
    http_status: int | None
    target_ref: str | None
    next_attempt_at: datetime | None
    output: Mapping[str, Any] | None


async def finish_attempt(
    session: AsyncSession, attempt: StepAttempt, **end: Unpack[AttemptEnd]
) -> None:
    params = _finish_params(attempt, end)
    # Each statement takes the parameters it names.
    await session.execute(FINISH_ATTEMPT, params)
    await session.execute(FINISH_STEP, params)


def _finish_params(attempt: StepAttempt, end: AttemptEnd) -> dict[str, Any]:
    """finish_attempt's values as the parameters of hot_path's FINISH and SUCCESS."""
    output = end.get("output")
    return {
        "p_attempt_id": attempt.id,
        "p_now": end["now"],
        "p_outcome": end["outcome"],
        "p_error_class": end.get("error_class"),
        "p_error_message": end.get("error_message"),
        "p_http_status": end.get("http_status"),
        "p_target_ref": end.get("target_ref"),
        "p_step_id": attempt.step_id,
        "p_step_state": end["step_state"],
        "p_next_attempt_at": end.get("next_attempt_at"),
        "p_step_ended_at": end["now"] if end["step_state"] in _ENDED else None,
        "p_output": dict(output) if output is not None else None,
    }


async def record_outcome(
    sessionmaker: async_sessionmaker[AsyncSession],
    attempt: StepAttempt,
    **end: Unpack[AttemptEnd],
) -> None:
    """Commit an attempt's outcome that is not a success (finish_attempt in a transaction of
    its own): on PostgreSQL one statement in autocommit, where BEGIN, two UPDATEs and COMMIT
    were four round trips."""
    engine = sessionmaker.kw["bind"]
    if driver.is_postgres(engine):
        await driver.fetch(engine, FINISH, _finish_params(attempt, end))
        return
    async with sessionmaker.begin() as session:
        await finish_attempt(session, attempt, **end)


async def add_external_ref(
    session: AsyncSession,
    correlation_id: str,
    *,
    system: System,
    object_type: str,
    external_id: str,
) -> None:
    # A retry or replay of the step finds the reference its earlier attempt added.
    await session.execute(
        insert_if_absent(session, REFS, ("correlation_id", "system", "object_type", "external_id")),
        {
            "correlation_id": correlation_id,
            "system": system,
            "object_type": object_type,
            "external_id": external_id,
        },
    )


async def open_exception(
    session: AsyncSession,
    correlation_id: str,
    *,
    step_id: int | None,
    classification: str,
    error_class: ErrorClass | None,
    message: str,
    suggested_action: str,
) -> ExceptionItem:
    item = ExceptionItem(
        correlation_id=correlation_id,
        step_id=step_id,
        status=ExceptionStatus.OPEN,
        classification=classification,
        error_class=error_class,
        message=message,
        suggested_action=suggested_action,
    )
    session.add(item)
    await session.flush()
    return item


async def settle(
    session: AsyncSession,
    claimed: Claim,
    *,
    state: TxState,
    now: datetime,
    reason: str | None = None,
    next_attempt_at: datetime | None = None,
) -> None:
    """Release the lease and record where the transaction now stands."""
    final = state not in ACTIVE_STATES
    await session.execute(
        _SETTLE,
        {
            "p_correlation_id": claimed.transaction.correlation_id,
            "p_state": state,
            "p_state_reason": reason,
            "p_next_attempt_at": next_attempt_at,
            "p_updated_at": now,
            "p_completed_at": now if final else None,
        },
    )
    if state is TxState.POSTED and claimed.run.number > 1:
        # A replay that succeeds closes what sent it to the exception queue, and says so.
        # (A first run cannot have one: an exception ends the run that opened it.)
        await session.execute(
            update(ExceptionItem)
            .where(
                ExceptionItem.correlation_id == claimed.transaction.correlation_id,
                ExceptionItem.status == ExceptionStatus.OPEN,
            )
            .values(
                status=ExceptionStatus.RESOLVED,
                resolved_at=now,
                resolved_by=f"run {claimed.run.number}",
                resolved_by_run_id=claimed.run.id,
                resolution_note="the transaction posted on a later run",
            )
        )
    if final:
        # A superseded event's run is ignored on purpose, which is not a failure.
        succeeded = state in (TxState.POSTED, TxState.IGNORED)
        await session.execute(
            _END_RUN,
            {
                "p_id": claimed.run.id,
                "p_state": RunState.SUCCEEDED if succeeded else RunState.FAILED,
                "p_ended_at": now,
            },
        )


@dataclass(frozen=True, slots=True)
class Reference:
    """A record a step's call made (or found) in a target system."""

    system: System
    object_type: str
    external_id: str


@dataclass(frozen=True, slots=True)
class Posting:
    """The settlement a run's last step commits with its success: the transaction posted."""

    reason: str | None = None


async def record_success(
    sessionmaker: async_sessionmaker[AsyncSession],
    claimed: Claim,
    attempt: StepAttempt,
    *,
    now: datetime,
    outcome: AttemptOutcome,
    step_state: StepState,
    http_status: int | None = None,
    target_ref: str | None = None,
    output: Mapping[str, Any] | None = None,
    ref: Reference | None = None,
    posting: Posting | None = None,
) -> None:
    """Commit a step's success after its call: the attempt's outcome, the step, the reference
    the call made and, with `posting`, the transaction posted (finish_attempt, add_external_ref
    and settle in one transaction).

    On PostgreSQL one statement in autocommit: one round trip where BEGIN, up to five writes
    and COMMIT were seven. A replay's posting also resolves the exception that sent it, which
    that statement does not write, so it keeps the transaction, as SQLite does.
    """
    # A success clears an earlier failure's error and retry time (no error given).
    fields: AttemptEnd = {
        "now": now,
        "outcome": outcome,
        "step_state": step_state,
        "http_status": http_status,
        "target_ref": target_ref,
        "output": output,
    }
    replay_posting = posting is not None and claimed.run.number > 1
    engine = sessionmaker.kw["bind"]
    if not replay_posting and driver.is_postgres(engine):
        params = _finish_params(attempt, fields)
        params["p_correlation_id"] = claimed.transaction.correlation_id
        if ref is not None:
            params |= {
                "p_system": ref.system,
                "p_object_type": ref.object_type,
                "p_external_id": ref.external_id,
            }
        if posting is not None:
            params |= {"p_run_id": claimed.run.id, "p_reason": posting.reason}
        await driver.fetch(engine, SUCCESS[ref is not None, posting is not None], params)
        return
    async with sessionmaker.begin() as session:
        await finish_attempt(session, attempt, **fields)
        if ref is not None:
            await add_external_ref(
                session,
                claimed.transaction.correlation_id,
                system=ref.system,
                object_type=ref.object_type,
                external_id=ref.external_id,
            )
        if posting is not None:
            await settle(session, claimed, state=TxState.POSTED, now=now, reason=posting.reason)


async def stale_transactions(
    session: AsyncSession, *, now: datetime, older_than: datetime, limit: int = 1000
) -> list[str]:
    """Active transactions nobody holds and nothing is waiting on: the sweeper wakes these."""
    tx = BusinessTransaction
    rows = await session.scalars(
        select(tx.correlation_id)
        .where(
            tx.state.in_(ACTIVE_STATES),
            or_(tx.lease_expires_at.is_(None), tx.lease_expires_at < now),
            or_(tx.next_attempt_at.is_(None), tx.next_attempt_at <= now),
            tx.updated_at <= older_than,
        )
        .order_by(tx.received_at)
        .limit(limit)
    )
    return list(rows)


# A predecessor in one of these states no longer holds its successors back.
SETTLED_FOR_ORDERING = (
    TxState.POSTED,
    TxState.MANUALLY_RESOLVED,
    TxState.IGNORED,
    TxState.REVERSED,
)
_UNSETTLED_ON_KEY = select(BusinessTransaction).where(
    BusinessTransaction.ordering_key == param(TX.c.ordering_key),
    BusinessTransaction.correlation_id != param(TX.c.correlation_id),
    BusinessTransaction.state.not_in(SETTLED_FOR_ORDERING),
)
_WAITING_ON_KEY = select(BusinessTransaction.correlation_id).where(
    BusinessTransaction.ordering_key == param(TX.c.ordering_key),
    BusinessTransaction.state == TxState.PENDING,
)


async def unsettled_predecessor(
    session: AsyncSession,
    tx: BusinessTransaction,
    *,
    rank: Callable[[str | None], int],
) -> BusinessTransaction | None:
    """The earliest transaction on the same ordering key, before this one in business order,
    that has not settled; None when this one may run.

    Business order is the source's event time, then `rank` of the workflow (sources stamp
    whole seconds, so an invoice's finalization and payment often tie), then arrival.
    """

    def _business_order(row: BusinessTransaction) -> tuple[datetime, int, datetime]:
        return business_order(row, rank)

    if tx.ordering_key is None:
        return None
    candidates = await session.scalars(
        _UNSETTLED_ON_KEY,
        {"p_ordering_key": tx.ordering_key, "p_correlation_id": tx.correlation_id},
    )
    earlier = [c for c in candidates if _business_order(c) < _business_order(tx)]
    return min(earlier, key=_business_order) if earlier else None


def business_order(
    row: BusinessTransaction, rank: Callable[[str | None], int]
) -> tuple[datetime, int, datetime]:
    return (row.occurred_at or row.received_at, rank(row.workflow), row.received_at)


async def posted_successor(
    session: AsyncSession,
    tx: BusinessTransaction,
    *,
    rank: Callable[[str | None], int],
    workflows: tuple[str, ...],
) -> BusinessTransaction | None:
    """The latest posted transaction of `workflows` on the same ordering key that comes after
    this one in business order: an event that arrived after it had already applied."""
    if tx.ordering_key is None or not workflows:
        return None
    candidates = await session.scalars(
        select(BusinessTransaction).where(
            BusinessTransaction.ordering_key == tx.ordering_key,
            BusinessTransaction.correlation_id != tx.correlation_id,
            BusinessTransaction.workflow.in_(workflows),
            BusinessTransaction.state == TxState.POSTED,
        )
    )
    mine = business_order(tx, rank)
    later = [c for c in candidates if business_order(c, rank) > mine]
    return max(later, key=lambda c: business_order(c, rank)) if later else None


async def has_posted(session: AsyncSession, *, ordering_key: str, workflow: str) -> bool:
    found = await session.scalar(
        select(BusinessTransaction.correlation_id)
        .where(
            BusinessTransaction.ordering_key == ordering_key,
            BusinessTransaction.workflow == workflow,
            BusinessTransaction.state.in_((TxState.POSTED, TxState.MANUALLY_RESOLVED)),
        )
        .limit(1)
    )
    return found is not None


async def waiting_on(session: AsyncSession, ordering_key: str) -> list[str]:
    """Transactions parked behind a predecessor on this key: to be woken when it settles."""
    rows = await session.scalars(_WAITING_ON_KEY, {"p_ordering_key": ordering_key})
    return list(rows)


# What an attempt left by a dead holder records as its error: also how such attempts are told
# apart from those that failed with an answer.
ABANDONED_ATTEMPT = "the worker died during this attempt; its outcome is unknown"
# What an attempt records when its job was cancelled mid-call and the worker lived on (arq's
# job timeout, or a shutdown's grace running out): not a death, so not a suspected poison.
CANCELLED_ATTEMPT = (
    "the job was cancelled during this attempt (CONCORD_JOB_TIMEOUT_S, or the worker shutting "
    "down); its outcome is unknown"
)


@dataclass(frozen=True, slots=True)
class Abandoned:
    """A step with attempts that died with their worker: its id, its attempts so far, and how
    many of those died (this time's and earlier ones)."""

    step_id: int
    attempts: int
    died: int


async def close_abandoned_attempts(
    session: AsyncSession, run_id: int, *, now: datetime
) -> dict[str, Abandoned]:
    """Close the attempts of a run that began but never finished, as failed with an unknown
    outcome; per step name, what the step's attempts come to.

    Read under a fresh lease, every one of these was left by a holder that died mid-call.
    """
    rows = (
        await session.execute(
            select(WorkflowStep.name, WorkflowStep.id, WorkflowStep.attempt_count)
            .join(StepAttempt, StepAttempt.step_id == WorkflowStep.id)
            .where(WorkflowStep.run_id == run_id, StepAttempt.ended_at.is_(None))
            .distinct()
        )
    ).all()
    if not rows:
        return {}
    step_ids = [step_id for _name, step_id, _count in rows]
    await session.execute(
        update(StepAttempt)
        .where(StepAttempt.step_id.in_(step_ids), StepAttempt.ended_at.is_(None))
        .values(
            ended_at=now,
            outcome=AttemptOutcome.FAILED,
            error_class=ErrorClass.RETRYABLE,
            error_message=ABANDONED_ATTEMPT,
        )
    )
    await session.execute(
        update(WorkflowStep)
        .where(WorkflowStep.id.in_(step_ids))
        .values(state=StepState.FAILED_RETRYABLE)
    )
    died = dict(
        (
            await session.execute(
                select(StepAttempt.step_id, func.count())
                .where(
                    StepAttempt.step_id.in_(step_ids),
                    StepAttempt.error_message == ABANDONED_ATTEMPT,
                )
                .group_by(StepAttempt.step_id)
            )
        ).all()
    )
    return {
        name: Abandoned(step_id, int(count), int(died.get(step_id, 0)))
        for name, step_id, count in rows
    }


async def steps_that_died(session: AsyncSession, run_id: int) -> set[str]:
    """The steps of a run with an attempt that died with its worker: the run is a suspected
    poison event until they succeed."""
    rows = await session.scalars(
        select(WorkflowStep.name)
        .join(StepAttempt, StepAttempt.step_id == WorkflowStep.id)
        .where(WorkflowStep.run_id == run_id, StepAttempt.error_message == ABANDONED_ATTEMPT)
        .distinct()
    )
    return set(rows)


async def mark_step(
    session: AsyncSession, *, run_id: int, name: str, state: StepState, message: str, now: datetime
) -> None:
    await session.execute(
        update(WorkflowStep)
        .where(WorkflowStep.run_id == run_id, WorkflowStep.name == name)
        .values(state=state, error_message=message, ended_at=now)
    )
