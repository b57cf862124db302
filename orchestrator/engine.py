"""Runs one transaction's workflow: claim, wait for predecessors, steps by dependency, settle.

The database is the source of truth; arq only wakes us. Every attempt is committed before its
call goes out and its outcome after, so a worker killed at any point leaves lineage that a
successor resumes from.
"""

import asyncio
import dataclasses
import logging
import os
import random
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from lineage import runs
from lineage.clock import utc_now
from lineage.enums import StepState, TxState
from lineage.runs import Claim
from orchestrator import quarantine, telemetry
from orchestrator.client.queue import enqueue_wakeup
from orchestrator.client.tracing import current_traceparent
from orchestrator.connectors.errors import ConnectorError
from orchestrator.connectors.ports import TargetRecord
from orchestrator.deps import WorkerDeps
from orchestrator.flows import WORKFLOWS, business_rank
from orchestrator.steps import StepOutcome, StepResult, backoff_s, context, run_step
from orchestrator.workflows import StepSkipped, StepSpec, WorkflowSpec

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    POSTED = "posted"
    RETRY_SCHEDULED = "retry_scheduled"
    WAITING = "waiting"
    EXCEPTION = "exception"
    REVERSED = "reversed"
    NOT_CLAIMED = "not_claimed"
    SUPERSEDED = "superseded"


async def run_transaction(deps: WorkerDeps, correlation_id: str) -> Outcome:
    """Advance one transaction as far as it can go now; idempotent and safe to call twice."""
    with telemetry.span("concord.transaction", correlation_id) as current:
        outcome, workflow = await _advance(deps, correlation_id)
        current.set_attribute("concord.outcome", outcome.value)
    telemetry.TRANSACTIONS.labels(workflow, outcome.value).inc()
    return outcome


@dataclasses.dataclass(frozen=True, slots=True)
class _Preflight:
    """What a run must know before its first call, read in the claim's own session."""

    spec: WorkflowSpec | None
    # Per step name: the steps whose calls died with their worker.
    abandoned: dict[str, runs.Abandoned]
    # Steps an earlier attempt of which died with its worker (orchestrator/quarantine.py).
    died: set[str]
    waiting: str | None
    superseded: str | None
    outputs: dict[str, Mapping[str, Any]]


async def _advance(deps: WorkerDeps, correlation_id: str) -> tuple[Outcome, str]:
    now = utc_now()

    async def preflight(session: AsyncSession, claimed: Claim) -> _Preflight:
        return await _preflight(session, claimed, now)

    # The claim's session reads everything the run needs before its first call: a session per
    # check was most of an uncontended transaction's database time.
    taken = await runs.take(
        deps.sessionmaker,
        correlation_id,
        owner=deps.settings.worker_id,
        lease_until=now + timedelta(seconds=deps.settings.lease_s),
        now=now,
        then=preflight,
    )
    if taken is None:
        return Outcome.NOT_CLAIMED, "-"
    claimed, pre = taken
    workflow = claimed.transaction.workflow or "-"
    with telemetry.span(
        "concord.run", correlation_id, workflow=workflow, run=str(claimed.run.number)
    ):
        return await _run(deps, claimed, pre), workflow


async def _preflight(session: AsyncSession, claimed: Claim, now: datetime) -> _Preflight:
    spec = WORKFLOWS.get(claimed.transaction.workflow or "")
    # Only a run that has steps can have left attempts behind.
    abandoned = (
        await runs.close_abandoned_attempts(session, claimed.run.id, now=now)
        if claimed.step_states
        else {}
    )
    # Deaths closed earlier in this run make it a suspected poison event.
    died = (
        await runs.steps_that_died(session, claimed.run.id)
        if claimed.step_states and not abandoned
        else set()
    )
    waiting = superseded = None
    if spec is not None:
        waiting = await _predecessor_wait(session, claimed, spec)
        if waiting is None:
            superseded = await _superseded(session, claimed, spec)
    outputs: dict[str, Mapping[str, Any]] = dict(claimed.outputs)
    if claimed.run.from_step:
        # A replay from a later step works with what the steps it leaves alone handed on.
        earlier = await runs.earlier_outputs(session, claimed.transaction.correlation_id)
        outputs = {**earlier, **outputs}
    return _Preflight(spec, abandoned, died, waiting, superseded, outputs)


async def _run(deps: WorkerDeps, claimed: Claim, pre: _Preflight) -> Outcome:
    spec = pre.spec
    if spec is None:
        return await _exception(
            deps,
            claimed,
            None,
            "mapping_missing",
            f"no workflow named {claimed.transaction.workflow!r} is defined",
            "deploy the workflow definition, then replay",
        )
    if pre.waiting:
        return await _wait(deps, claimed, spec, pre.waiting)
    deltas = tuple(step for step in spec.steps if step.on_superseded)
    if pre.superseded and not deltas:
        return await _ignore(deps, claimed, pre.superseded)
    try:
        data = spec.input_model.model_validate(
            claimed.run.input_override or claimed.transaction.canonical
        )
    except ValidationError as exc:
        return await _exception(
            deps,
            claimed,
            None,
            "validation",
            f"the workflow input is invalid: {exc}",
            "replay with a corrected payload",
        )
    if pre.superseded:
        names = ", ".join(step.name for step in deltas)
        reason = f"{pre.superseded}; only its own deltas ran ({names})"
        return await _run_steps(deps, claimed, spec, data, pre, deltas, reason=reason)
    return await _run_steps(deps, claimed, spec, data, pre, spec.steps)


async def _run_steps(
    deps: WorkerDeps,
    claimed: Claim,
    spec: WorkflowSpec,
    data: BaseModel,
    pre: _Preflight,
    steps: tuple[StepSpec, ...],
    *,
    reason: str | None = None,
) -> Outcome:
    names = [step.name for step in spec.steps]
    # A replay from a named step leaves the steps before it as the earlier run left them.
    start = names.index(claimed.run.from_step) if claimed.run.from_step in names else 0
    done = {
        n for n, s in claimed.step_states.items() if s in (StepState.SUCCEEDED, StepState.SKIPPED)
    } | set(names[:start])
    pending = [_fault_hook(claimed, step) for step in steps if step.name not in done]
    # A superseded run leaves most steps out; its steps do not wait for those.
    scope = {step.name for step in steps} | done
    isolated = await _isolate_poison(deps, claimed, pending, pre.abandoned)
    if isolated is not None:
        return isolated
    suspect = any(step.name in pre.died for step in pending)
    hold_s = deps.settings.lease_s
    async with quarantine.admitted(deps.redis, suspect=suspect, hold_s=hold_s) as admitted:
        if not admitted:
            return await _wait_for_quarantine(deps, claimed, pending)
        outputs = dict(pre.outputs)
        settled = False

        while pending:
            # Independent branches (every dependency met) run concurrently.
            ready = [step for step in pending if set(step.depends_on) & scope <= done]
            # The last step, alone: its success is the transaction's, so they commit together.
            posting = runs.Posting(reason) if len(ready) == len(pending) == 1 else None
            results = await asyncio.gather(
                *(run_step(deps, claimed, s, data, outputs, posting=posting) for s in ready)
            )
            settled = any(r.settled for r in results)
            succeeded = [r for r in results if r.outcome is StepOutcome.SUCCEEDED]
            done |= {r.step.name for r in succeeded}
            outputs |= {r.step.name: r.output for r in succeeded if r.output is not None}
            failed = [r for r in results if r.outcome is StepOutcome.FAILED]
            if failed:
                return await _fail(deps, claimed, spec, data, failed[0], done, outputs)
            retries = [r for r in results if r.outcome is StepOutcome.RETRY]
            if retries:
                return await _schedule_retry(deps, claimed, retries)
            pending = [step for step in pending if step.name not in done]
        if not settled:
            async with deps.sessionmaker.begin() as session:
                await runs.settle(
                    session, claimed, state=TxState.POSTED, now=utc_now(), reason=reason
                )
        await _wake_successors(deps, claimed)
        return Outcome.POSTED


async def _isolate_poison(
    deps: WorkerDeps,
    claimed: Claim,
    steps: list[StepSpec],
    abandoned: dict[str, runs.Abandoned],
) -> Outcome | None:
    """Count calls that died with their worker as failed attempts, so an event that crashes
    every worker handling it ends in the exception queue after its budget.

    Under a fresh lease, an attempt that never recorded an outcome belonged to a holder that
    died (or was cancelled) mid-call. Such a transaction backs off with jitter before it runs
    again: the transactions one crash took down together would otherwise all be woken
    together, share the poison's next crash, and spend their budgets with it.
    """
    now = utc_now()
    retries: list[StepResult] = []
    for step in steps:
        if step.name not in abandoned:
            continue
        left = abandoned[step.name]
        if left.attempts >= (step.retry.max_attempts or deps.settings.max_attempts):
            return await _budget_spent_by_deaths(deps, claimed, step, left, now)
        delay = backoff_s(
            left.attempts,
            base_s=step.retry.base_s or deps.settings.retry_base_s,
            cap_s=step.retry.cap_s or deps.settings.retry_cap_s,
            retry_after_s=None,
        )
        due = now + timedelta(seconds=delay * random.uniform(1.0, 4.0))
        reason = f"{step.name} retries at {due.isoformat()} (its worker died mid-call)"
        retries.append(StepResult(StepOutcome.RETRY, step, due=due, reason=reason))
    return await _schedule_retry(deps, claimed, retries) if retries else None


async def _wait_for_quarantine(deps: WorkerDeps, claimed: Claim, steps: list[StepSpec]) -> Outcome:
    """Another suspect holds the slot: come back in a few seconds, without an attempt."""
    due = utc_now() + timedelta(seconds=random.uniform(1.0, 3.0))
    reason = (
        f"{steps[0].name} waits for another suspected poison event to finish"
        " (its worker died mid-call before, so it runs alone)"
    )
    return await _schedule_retry(
        deps, claimed, [StepResult(StepOutcome.RETRY, steps[0], due=due, reason=reason)]
    )


async def _budget_spent_by_deaths(
    deps: WorkerDeps, claimed: Claim, step: StepSpec, left: runs.Abandoned, now: datetime
) -> Outcome:
    """The budget ran out on an attempt that died. Only when every attempt died is the event
    suspected of killing workers; otherwise the target's answers spent most of the budget."""
    if left.died >= left.attempts:
        classification = "worker_crash"
        message = f"{step.name}: the worker died during each of {left.attempts} attempts"
        action = "find what kills the worker in its logs (by correlation ID), fix it, then replay"
    else:
        classification = "retry_budget_exhausted"
        message = (
            f"{step.name}: retry budget exhausted after {left.attempts} attempts, "
            f"{left.died} of them ended with their worker (outcome unknown)"
        )
        action = "fix the cause named in the message, then replay"
    await _mark_step(deps, claimed, step, StepState.FAILED_TERMINAL, message, now=now)
    return await _exception(deps, claimed, left.step_id, classification, message, action)


async def _mark_step(
    deps: WorkerDeps,
    claimed: Claim,
    step: StepSpec,
    state: StepState,
    message: str,
    *,
    now: datetime,
) -> None:
    async with deps.sessionmaker.begin() as session:
        await runs.mark_step(
            session, run_id=claimed.run.id, name=step.name, state=state, message=message, now=now
        )


def _fault_hook(claimed: Claim, step: StepSpec) -> StepSpec:
    """Test-only fault injection: CONCORD_FAULT_CRASH_INVOICE names a billing invoice whose
    step calls kill the worker process, as a crashing handler would (tests/chaos/test_poison)."""
    poison = os.environ.get("CONCORD_FAULT_CRASH_INVOICE")
    if not poison or claimed.transaction.invoice_id != poison:
        return step

    async def crash(*_args: object, **_kwargs: object) -> TargetRecord:
        os._exit(70)

    return dataclasses.replace(step, action=crash)


async def _predecessor_wait(
    session: AsyncSession, claimed: Claim, spec: WorkflowSpec
) -> str | None:
    tx = claimed.transaction
    if tx.ordering_key is None:
        return None
    before = await runs.unsettled_predecessor(session, tx, rank=business_rank)
    if before is not None:
        return (
            f"waiting for {before.correlation_id} ({before.event_type}, {before.state}) "
            f"on {tx.ordering_key}"
        )
    for workflow in spec.requires:
        if not await runs.has_posted(
            session, ordering_key=tx.ordering_key, workflow=workflow.value
        ):
            return f"waiting for a posted {workflow.value} on {tx.ordering_key}"
    return None


async def _superseded(session: AsyncSession, claimed: Claim, spec: WorkflowSpec) -> str | None:
    """Applying a state older than one already posted would roll the targets back."""
    later = await runs.posted_successor(
        session,
        claimed.transaction,
        rank=business_rank,
        workflows=tuple(w.value for w in spec.superseded_by),
    )
    if later is None:
        return None
    return (
        f"superseded by {later.correlation_id} ({later.event_type}), a later state of "
        f"{claimed.transaction.ordering_key} that had already posted when this one arrived"
    )


async def _ignore(deps: WorkerDeps, claimed: Claim, reason: str) -> Outcome:
    async with deps.sessionmaker.begin() as session:
        await runs.settle(session, claimed, state=TxState.IGNORED, now=utc_now(), reason=reason)
    await _wake_successors(deps, claimed)
    return Outcome.SUPERSEDED


async def _wait(deps: WorkerDeps, claimed: Claim, spec: WorkflowSpec, reason: str) -> Outcome:
    age = (utc_now() - claimed.transaction.received_at).total_seconds()
    if age > deps.settings.ordering_timeout_s:
        return await _exception(
            deps,
            claimed,
            None,
            "ordering",
            f"{reason} for {age:.0f}s",
            "check the predecessor; replay or resolve it, or resolve this one by hand",
        )
    async with deps.sessionmaker.begin() as session:
        # Pending, not leased: the predecessor's completion (or the sweeper) wakes it again.
        await runs.settle(session, claimed, state=TxState.PENDING, now=utc_now(), reason=reason)
    # The predecessor may have settled after we looked and before we were pending, and then
    # found nobody pending to wake. Each side looks only after its own commit, so at least one
    # of the two sees the other: here, that is this second look.
    async with deps.sessionmaker() as session:
        still = await _predecessor_wait(session, claimed, spec)
    if still is None:
        try:
            # Its own job ID: this job's ID stays taken until it returns.
            await enqueue_wakeup(
                deps.redis,
                claimed.transaction.correlation_id,
                due=f"recheck:{claimed.run.number}:{utc_now().timestamp():.6f}",
            )
        except Exception:
            log.warning("not re-queued; the sweeper will wake it", exc_info=True)
    return Outcome.WAITING


async def _schedule_retry(deps: WorkerDeps, claimed: Claim, retries: list[StepResult]) -> Outcome:
    due = min(r.due for r in retries if r.due is not None)
    reason = "; ".join(r.reason for r in retries)
    async with deps.sessionmaker.begin() as session:
        await runs.settle(
            session,
            claimed,
            state=TxState.RETRYING,
            now=utc_now(),
            next_attempt_at=due,
            reason=reason[:500],
        )
    try:
        # The sweeper wakes it when due if this enqueue is lost.
        await enqueue_wakeup(
            deps.redis,
            claimed.transaction.correlation_id,
            defer_until=due,
            due=f"{claimed.run.number}:{due.timestamp():.3f}",
            traceparent=current_traceparent(),
        )
    except Exception:
        log.warning("retry not queued; the sweeper will wake it when due", exc_info=True)
    return Outcome.RETRY_SCHEDULED


async def _fail(
    deps: WorkerDeps,
    claimed: Claim,
    spec: WorkflowSpec,
    data: BaseModel,
    failure: StepResult,
    done: set[str],
    outputs: Mapping[str, Mapping[str, Any]],
) -> Outcome:
    undone: list[str] = []
    broken = None
    if failure.step.undo_on_failure:
        undone, broken = await _compensate(deps, claimed, spec, data, done, outputs)
    message = failure.reason + (f"; compensation failed: {broken}" if broken else "")
    action = (
        "the effects of earlier steps were undone; fix the cause, then replay"
        if undone and not broken
        else "fix the cause named in the message, then replay"
        if failure.step.undo_on_failure
        else f"the earlier steps' effects stand; fix the cause, then replay from {failure.step.name}"
    )
    return await _exception(
        deps,
        claimed,
        failure.step_id,
        failure.classification,
        message,
        action,
        state=TxState.REVERSED if undone and not broken else None,
    )


async def _compensate(
    deps: WorkerDeps,
    claimed: Claim,
    spec: WorkflowSpec,
    data: BaseModel,
    done: set[str],
    outputs: Mapping[str, Mapping[str, Any]],
) -> tuple[list[str], str | None]:
    """Undo succeeded steps that declare a compensation, latest first."""
    undone: list[str] = []
    correlation_id = claimed.transaction.correlation_id
    for step in reversed(spec.steps):
        if step.name not in done or step.compensate is None:
            continue
        try:
            await step.compensate(
                deps, data, context(correlation_id, step, suffix=":compensate", outputs=outputs)
            )
        except StepSkipped:
            continue  # the step had posted nothing, so there is nothing to undo
        except ConnectorError as exc:
            return undone, f"{step.name}: {exc}"
        undone.append(step.name)
        message = "compensated after a later step failed"
        await _mark_step(deps, claimed, step, StepState.COMPENSATED, message, now=utc_now())
    return undone, None


async def _exception(
    deps: WorkerDeps,
    claimed: Claim,
    step_id: int | None,
    classification: str,
    message: str,
    action: str,
    *,
    state: TxState | None = None,
) -> Outcome:
    final = state or TxState.EXCEPTION
    async with deps.sessionmaker.begin() as session:
        await runs.open_exception(
            session,
            claimed.transaction.correlation_id,
            step_id=step_id,
            classification=classification,
            error_class=None,
            message=message,
            suggested_action=action,
        )
        await runs.settle(session, claimed, state=final, now=utc_now(), reason=message[:500])
    if final is TxState.REVERSED:
        await _wake_successors(deps, claimed)
        return Outcome.REVERSED
    return Outcome.EXCEPTION


async def _wake_successors(deps: WorkerDeps, claimed: Claim) -> None:
    """Wake what is parked behind this transaction; read after its settlement commits (see
    _wait for why the order matters)."""
    key = claimed.transaction.ordering_key
    if key is None:
        return
    async with deps.sessionmaker() as session:
        # One statement, so no transaction around it: BEGIN and ROLLBACK were two of its three
        # round trips (the connection's isolation level is put back when it returns to the pool).
        await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        waiting = await runs.waiting_on(session, key)
    for correlation_id in waiting:
        try:
            # Not the plain `tx:<id>`: a successor whose own job is still returning holds
            # that ID, and a wake-up under it would be dropped.
            await enqueue_wakeup(
                deps.redis, correlation_id, due=f"after:{claimed.transaction.correlation_id}"
            )
        except Exception:
            log.warning("successor not woken; the sweeper will", exc_info=True)
