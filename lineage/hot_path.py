"""The statements of the engine's hot path (lineage/runs.py runs them), built once.

CLAIM serves both backends. The others are PostgreSQL's one-statement forms of writes that
SQLite, which has no data-modifying CTEs, makes in a transaction: one round trip where BEGIN,
each write and COMMIT were one each, for every transaction or step (docs/performance.md, "Fewer
engine round trips"). FIRST_CLAIM, FIRST_DELIVERY, FIRST_ATTEMPT, FINISH and SUCCESS run in
autocommit, atomic as one statement; lineage/runs.py sends FIRST_CLAIM, FIRST_ATTEMPT, FINISH and
SUCCESS through asyncpg itself (lineage/driver.py).

The writes of one statement run against the same snapshot and cannot see each other: each here
touches a different row of a different table, which is what makes them safe to combine.
"""

from typing import Any

from sqlalchemy import (
    CTE,
    Column,
    ColumnElement,
    Insert,
    Select,
    Table,
    Update,
    bindparam,
    false,
    insert,
    literal,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import BindParameter

from lineage.enums import ACTIVE_STATES, RunState, TxState
from lineage.models import (
    BusinessTransaction,
    ExternalRef,
    InboxEvent,
    StepAttempt,
    WorkflowRun,
    WorkflowStep,
    table_of,
)

REFS = table_of(ExternalRef)
EVENTS = table_of(InboxEvent)
TX = table_of(BusinessTransaction)
RUNS = table_of(WorkflowRun)
STEPS = table_of(WorkflowStep)
ATTEMPTS = table_of(StepAttempt)

# The statements of the hot path are built once, with their values as bound parameters:
# building one per call (its WHERE and SET clauses) was a fifth of the worker's CPU per step
# (docs/performance.md, "Lineage statements built once").


def param(column: Column[Any], name: str = "") -> BindParameter[Any]:
    """A bound parameter typed as `column` (so UTC datetimes are checked and converted),
    named apart from the column, which SQLAlchemy reserves for its own SET parameters."""
    return bindparam(f"p_{name or column.key}", type_=column.type)


def _take(target: Table | type[BusinessTransaction], state: ColumnElement[bool]) -> Update:
    """Take the lease on the transaction p_correlation_id if `state` holds and it is neither
    held nor waiting at p_now: one conditional UPDATE decides, so two workers woken for the
    same transaction never both run its steps."""
    now = param(TX.c.updated_at, "now")
    return (
        update(target)
        .where(
            TX.c.correlation_id == param(TX.c.correlation_id),
            state,
            or_(TX.c.lease_expires_at.is_(None), TX.c.lease_expires_at < now),
            or_(TX.c.next_attempt_at.is_(None), TX.c.next_attempt_at <= now),
        )
        .values(
            state=TxState.RUNNING,
            lease_owner=param(TX.c.lease_owner),
            lease_expires_at=param(TX.c.lease_expires_at),
            next_attempt_at=None,
            updated_at=now,
        )
    )


# The claimed row comes back with the UPDATE: no second round trip to read it.
CLAIM = (
    _take(BusinessTransaction, TX.c.state.in_(ACTIVE_STATES))
    .returning(BusinessTransaction)
    .execution_options(synchronize_session=False, populate_existing=True)
)


def _first_claim_statement() -> Select[Any]:
    """A transaction's first claim (it is `received` only until then): the lease, run 1
    counted and opened. Answers the transaction's columns and run_id; no row when the
    transaction is not received, held or due, in which case CLAIM decides."""
    claimed = (
        _take(TX, TX.c.state == TxState.RECEIVED)
        .values(run_count=1)
        .returning(*TX.c)
        .cte("claimed")
    )
    run = (
        insert(RUNS)
        .from_select(
            ["correlation_id", "number", "trigger", "state", "started_at", "force_new_posting"],
            select(
                claimed.c.correlation_id,
                literal(1),
                literal("initial"),
                literal(RunState.RUNNING, RUNS.c.state.type),
                param(RUNS.c.started_at, "now"),
                false(),
            ),
        )
        .returning(RUNS.c.id)
        .cte("new_run")
    )
    return select(*claimed.c, run.c.id.label("run_id")).join_from(claimed, run, true())


FIRST_CLAIM = _first_claim_statement()


async def autocommit_on_postgres(session: AsyncSession) -> bool:
    """Put a fresh `session` in autocommit for one of these one-statement writes, which is
    atomic as a statement; False on SQLite, where the caller makes the writes in a
    transaction instead."""
    if session.get_bind().dialect.name != "postgresql":
        return False
    await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    return True


NEW_STEP_COLUMNS = (
    "run_id",
    "correlation_id",
    "name",
    "target_system",
    "state",
    "idempotency_key",
    "external_id",
    "started_at",
    "attempt_count",
)


def _first_attempt_statement() -> Insert:
    """A step's row and its first attempt."""
    step = (
        insert(STEPS)
        .values({c: param(STEPS.c[c]) for c in NEW_STEP_COLUMNS})
        .returning(STEPS.c.id)
        .cte("new_step")
    )
    return (
        insert(ATTEMPTS)
        .from_select(
            ["step_id", "correlation_id", "number", "started_at"],
            select(step.c.id, param(STEPS.c.correlation_id), literal(1), param(STEPS.c.started_at)),
        )
        .returning(ATTEMPTS.c.id, ATTEMPTS.c.step_id)
    )


FIRST_ATTEMPT = _first_attempt_statement()


def _finish_updates() -> tuple[Update, Update]:
    """An attempt's outcome and its step (lineage.runs.finish_attempt runs them on SQLite).
    Parameters: p_attempt_id, p_now, p_outcome, p_error_class, p_error_message,
    p_http_status, p_target_ref; p_step_id, p_step_state, p_next_attempt_at, p_step_ended_at,
    p_output (lineage.runs._finish_params names them)."""
    error_class, error_message = param(ATTEMPTS.c.error_class), param(ATTEMPTS.c.error_message)
    attempt = (
        update(ATTEMPTS)
        .where(ATTEMPTS.c.id == param(ATTEMPTS.c.id, "attempt_id"))
        .values(
            ended_at=param(ATTEMPTS.c.ended_at, "now"),
            outcome=param(ATTEMPTS.c.outcome),
            error_class=error_class,
            error_message=error_message,
            http_status=param(ATTEMPTS.c.http_status),
            target_ref=param(ATTEMPTS.c.target_ref),
        )
    )
    step = (
        update(STEPS)
        .where(STEPS.c.id == param(STEPS.c.id, "step_id"))
        .values(
            state=param(STEPS.c.state, "step_state"),
            error_class=error_class,
            error_message=error_message,
            next_attempt_at=param(STEPS.c.next_attempt_at),
            ended_at=param(STEPS.c.ended_at, "step_ended_at"),
            output=param(STEPS.c.output),
        )
    )
    return attempt, step


FINISH_ATTEMPT, FINISH_STEP = _finish_updates()


def _finished() -> tuple[CTE, CTE]:
    """FINISH_ATTEMPT (answering the attempt's id) and FINISH_STEP as the CTEs
    finished_attempt and finished_step."""
    return (
        FINISH_ATTEMPT.returning(ATTEMPTS.c.id).cte("finished_attempt"),
        FINISH_STEP.cte("finished_step"),
    )


def _finish_statement() -> Select[int]:
    """An attempt's outcome and its step, whatever the outcome. Answers the attempt's id."""
    attempt, step = _finished()
    return select(attempt.c.id).add_cte(attempt, step)


FINISH = _finish_statement()


def _success_statement(*, ref: bool, settle: bool) -> Select[int]:
    """A step's success: its attempt's outcome and the step (_finished); with `ref`, the
    external reference its call made (kept if a retry's earlier attempt already added it);
    with `settle`, the transaction posted and its run ended, for the run's last step.

    Parameters: _finished's, and p_correlation_id; with `ref` p_system, p_object_type,
    p_external_id; with `settle` p_run_id, p_reason. Answers the attempt's id (no row if it
    does not exist).
    """
    now = param(ATTEMPTS.c.ended_at, "now")
    correlation_id = param(TX.c.correlation_id)
    attempt, step = _finished()
    writes = [step]
    if ref:
        writes.append(
            pg_insert(REFS)
            .values(
                correlation_id=correlation_id,
                system=param(REFS.c.system),
                object_type=param(REFS.c.object_type),
                external_id=param(REFS.c.external_id),
                created_at=now,
            )
            .on_conflict_do_nothing(
                index_elements=["correlation_id", "system", "object_type", "external_id"]
            )
            .cte("new_ref")
        )
    if settle:
        # What lineage.runs.settle writes for a posted first run.
        writes.append(
            update(TX)
            .where(TX.c.correlation_id == correlation_id)
            .values(
                state=TxState.POSTED,
                state_reason=param(TX.c.state_reason, "reason"),
                lease_owner=None,
                lease_expires_at=None,
                next_attempt_at=None,
                updated_at=now,
                completed_at=now,
            )
            .cte("posted")
        )
        writes.append(
            update(RUNS)
            .where(RUNS.c.id == param(RUNS.c.id, "run_id"))
            .values(state=RunState.SUCCEEDED, ended_at=now)
            .cte("ended_run")
        )
    # The writes nothing reads are rendered all the same: PostgreSQL runs every one.
    return select(attempt.c.id).add_cte(attempt, *writes)


SUCCESS = {
    (ref, settle): _success_statement(ref=ref, settle=settle)
    for ref in (False, True)
    for settle in (False, True)
}


_TX_COLUMNS = (
    "correlation_id", "workflow", "state", "state_reason", "source_system", "event_type",
    "canonical", "customer_id", "subscription_id", "invoice_id", "amount_minor", "currency",
    "period", "ordering_key", "occurred_at", "received_at", "updated_at", "completed_at",
    "run_count",
)  # fmt: skip
_EVENT_COLUMNS = (
    "source", "source_event_id", "event_type", "status", "ignored_reason", "correlation_id",
    "payload", "payload_sha256", "received_at", "last_delivery_at", "deliveries",
)  # fmt: skip
# The intake adds a reference to each of these objects an event names (its <key>_id).
REF_KEYS = ("invoice", "customer", "subscription")


def _first_delivery_statement() -> Select[int]:
    """An event's first delivery: the event, the transaction it starts, and a reference to
    each billing object it names, written only when the event's (source, source_event_id) is
    free: no row, and nothing written, for a redelivery.

    Parameters: p_<column> of the transaction (_TX_COLUMNS), p_event_<column> of the event
    (_EVENT_COLUMNS). The event names its transaction, inserted by the same statement: the
    foreign key is checked at the statement's end.
    """
    event = (
        pg_insert(EVENTS)
        .values({c: param(EVENTS.c[c], f"event_{c}") for c in _EVENT_COLUMNS})
        .on_conflict_do_nothing(index_elements=["source", "source_event_id"])
        .returning(EVENTS.c.id)
        .cte("new_event")
    )
    transaction = insert(TX).from_select(
        list(_TX_COLUMNS), select(*(param(TX.c[c]) for c in _TX_COLUMNS)).select_from(event)
    )
    correlation_id, system = param(TX.c.correlation_id), param(TX.c.source_system)
    now = param(TX.c.received_at)
    named = [
        select(correlation_id, system, literal(key), param(TX.c[f"{key}_id"]), now)
        .select_from(event)
        .where(param(TX.c[f"{key}_id"]).is_not(None))
        for key in REF_KEYS
    ]
    refs = insert(REFS).from_select(
        ["correlation_id", "system", "object_type", "external_id", "created_at"],
        union_all(*named),
    )
    return select(event.c.id).add_cte(
        event, transaction.cte("new_transaction"), refs.cte("new_refs")
    )


FIRST_DELIVERY = _first_delivery_statement()
