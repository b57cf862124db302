"""One step of one run: rate limit, attempt row, call (or look up), outcome row."""

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from lineage import runs
from lineage.clock import utc_now
from lineage.enums import AttemptOutcome, ErrorClass, StepState
from lineage.models import StepAttempt, WorkflowStep
from lineage.runs import Claim
from orchestrator import telemetry
from orchestrator.connectors.errors import Conflict, ConnectorError, Retryable
from orchestrator.connectors.ports import CallContext, TargetRecord
from orchestrator.deps import WorkerDeps
from orchestrator.workflows import StepSkipped, StepSpec

log = logging.getLogger(__name__)


class StepOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class StepResult:
    outcome: StepOutcome
    step: StepSpec
    due: datetime | None = None
    reason: str = ""
    classification: str = ""
    step_id: int | None = None
    output: Mapping[str, Any] | None = None
    # The success was committed together with the transaction's settlement.
    settled: bool = False


def backoff_s(attempt: int, *, base_s: float, cap_s: float, retry_after_s: float | None) -> float:
    """Exponential backoff with jitter, never earlier than the target's Retry-After."""
    delay = min(cap_s, base_s * 2.0 ** (attempt - 1)) * random.uniform(0.5, 1.0)
    return max(delay, retry_after_s or 0.0)


def context(
    correlation_id: str,
    step: StepSpec,
    *,
    suffix: str = "",
    outputs: Mapping[str, Mapping[str, Any]] | None = None,
) -> CallContext:
    given = outputs or {}
    earlier = {name: given[name] for name in step.uses if name in given}
    return CallContext(
        correlation_id=correlation_id,
        idempotency_key=f"{correlation_id}:{step.name}{suffix}",
        earlier=earlier,
    )


async def run_step(
    deps: WorkerDeps,
    claimed: Claim,
    step: StepSpec,
    data: BaseModel,
    outputs: Mapping[str, Mapping[str, Any]],
    *,
    posting: runs.Posting | None = None,
) -> StepResult:
    """Attempt a step once; the attempt is committed before the call and its outcome after.

    `outputs` holds what earlier steps handed on; the step sees those it `uses`. `posting`, for
    the run's last step, is committed with a success: one commit fewer per transaction.
    """
    correlation_id = claimed.transaction.correlation_id
    started = time.perf_counter()
    with telemetry.span("concord.step", correlation_id, step=step.name, target=step.target):
        result = await _attempt(deps, claimed, step, data, outputs, posting)
    telemetry.STEP_SECONDS.labels(step.name, step.target.value, result.outcome.value).observe(
        time.perf_counter() - started
    )
    if result.outcome is StepOutcome.RETRY:
        telemetry.RETRIES.labels(step.name, step.target.value).inc()
    return result


async def _attempt(
    deps: WorkerDeps,
    claimed: Claim,
    step: StepSpec,
    data: BaseModel,
    outputs: Mapping[str, Mapping[str, Any]],
    posting: runs.Posting | None,
) -> StepResult:
    correlation_id = claimed.transaction.correlation_id
    wait = await _rate_limit(deps, step)
    if wait:
        return StepResult(
            StepOutcome.RETRY,
            step,
            due=utc_now() + timedelta(seconds=wait),
            reason=f"{step.name} waits for the {step.target} rate limit",
        )
    # A replay looks the record up before anything else, and posts only when the target does
    # not hold it, under a key of its own: a target that lost the record (ERP drift) still
    # answers the original key with the lost record's location.
    replay = claimed.run.trigger == "replay"
    missing = set(step.uses) - outputs.keys()
    if missing:
        return StepResult(
            StepOutcome.FAILED,
            step,
            reason=f"{step.name} needs the output of {sorted(missing)}, which no run recorded",
            classification="validation",
        )
    suffix = f":run{claimed.run.number}" if replay else ""
    ctx = context(correlation_id, step, suffix=suffix, outputs=outputs)
    forced = claimed.run.force_new_posting and step.fork is not None
    if forced:
        # An admin asked for a second copy: a new external ID, which the replay's lookup
        # cannot confuse with the first record.
        assert step.fork is not None
        data = step.fork(data, f"~r{claimed.run.number}")
    external_id = step.external_id(data)
    recorded: dict[str, Any] = {
        "run_id": claimed.run.id,
        "correlation_id": correlation_id,
        "name": step.name,
        "target": step.target,
        "idempotency_key": ctx.idempotency_key,
        "external_id": external_id,
        "now": utc_now(),
    }
    if step.name not in claimed.step_states:
        row, attempt = await runs.record_first_attempt(deps.sessionmaker, **recorded)
    else:
        async with deps.sessionmaker.begin() as session:
            row, attempt = await runs.start_attempt(session, **recorded)
    try:
        record, found = await _call(
            deps, step, data, ctx, external_id, first=attempt.number == 1 and not replay
        )
    except StepSkipped as skipped:
        await runs.record_success(
            deps.sessionmaker,
            claimed,
            attempt,
            now=utc_now(),
            outcome=AttemptOutcome.SUCCEEDED,
            step_state=StepState.SKIPPED,
            output={"skipped": str(skipped)},
            posting=posting,
        )
        return StepResult(StepOutcome.SUCCEEDED, step, step_id=row.id, settled=posting is not None)
    except Retryable as exc:
        return await _retryable(deps, step, row, attempt, exc)
    except ConnectorError as exc:
        await _finish_failed(deps, attempt, exc, exc.error_class)
        return StepResult(
            StepOutcome.FAILED,
            step,
            reason=f"{step.name}: {exc}",
            classification=exc.classification,
            step_id=row.id,
        )
    except asyncio.CancelledError:
        await _finish_cancelled(deps, attempt)
        raise
    await runs.record_success(
        deps.sessionmaker,
        claimed,
        attempt,
        now=utc_now(),
        outcome=AttemptOutcome.FOUND_EXISTING if found else AttemptOutcome.SUCCEEDED,
        step_state=StepState.SUCCEEDED,
        http_status=record.http_status,
        target_ref=record.record_id,
        output=record.output,
        ref=runs.Reference(record.system, record.object_type, record.record_id),
        posting=posting,
    )
    return StepResult(
        StepOutcome.SUCCEEDED,
        step,
        step_id=row.id,
        output=record.output,
        settled=posting is not None,
    )


async def _rate_limit(deps: WorkerDeps, step: StepSpec) -> float:
    """Seconds to come back later; short waits are slept here rather than re-queued."""
    for _ in range(10):
        wait = await deps.limiter.take(step.target.value)
        if wait == 0:
            return 0.0
        if wait > deps.settings.max_inline_wait_s:
            return wait
        await asyncio.sleep(wait)
    return deps.settings.max_inline_wait_s


async def _call(
    deps: WorkerDeps,
    step: StepSpec,
    data: BaseModel,
    ctx: CallContext,
    external_id: str,
    *,
    first: bool,
) -> tuple[TargetRecord, bool]:
    """Post once; after an earlier attempt whose outcome is unknown, look before posting again."""
    if not first and step.lookup is not None:
        existing = await step.lookup(deps, external_id, ctx)
        if existing is not None:
            return existing, True
    try:
        return await step.action(deps, data, ctx), False
    except Conflict as exc:
        existing = await step.lookup(deps, external_id, ctx) if step.lookup else None
        if existing is None:
            raise ConnectorError(
                f"the target reported {external_id} as existing but does not return it",
                http_status=exc.http_status,
            ) from exc
        return existing, True


async def _retryable(
    deps: WorkerDeps, step: StepSpec, row: WorkflowStep, attempt: StepAttempt, exc: Retryable
) -> StepResult:
    settings, policy, now = deps.settings, step.retry, utc_now()
    max_attempts = policy.max_attempts or settings.max_attempts
    started = row.started_at or attempt.started_at
    over_budget = (now - started).total_seconds() >= policy.budget_s
    if attempt.number >= max_attempts or over_budget:
        await _finish_failed(deps, attempt, exc, ErrorClass.RETRYABLE)
        spent = f"{attempt.number} attempts" if not over_budget else f"{policy.budget_s:.0f}s"
        return StepResult(
            StepOutcome.FAILED,
            step,
            step_id=row.id,
            classification="retry_budget_exhausted",
            reason=f"{step.name}: retry budget exhausted after {spent}; last error: {exc}",
        )
    delay = backoff_s(
        attempt.number,
        base_s=policy.base_s or settings.retry_base_s,
        cap_s=policy.cap_s or settings.retry_cap_s,
        retry_after_s=exc.retry_after_s,
    )
    due = now + timedelta(seconds=delay)
    await runs.record_outcome(
        deps.sessionmaker,
        attempt,
        now=now,
        outcome=AttemptOutcome.FAILED,
        step_state=StepState.FAILED_RETRYABLE,
        error_class=ErrorClass.RETRYABLE,
        error_message=str(exc),
        http_status=exc.http_status,
        next_attempt_at=due,
    )
    return StepResult(
        StepOutcome.RETRY,
        step,
        due=due,
        step_id=row.id,
        reason=f"{step.name} retries at {due.isoformat()} ({exc.classification})",
    )


async def _finish_cancelled(deps: WorkerDeps, attempt: StepAttempt) -> None:
    """Close an attempt whose job was cancelled mid-call (arq's job timeout, or a shutdown's
    grace running out), so that the next holder does not take it for a worker that died with
    the event and hold the event back as a suspected poison (orchestrator/quarantine.py). Its
    outcome is unknown all the same: the next attempt looks the record up before posting."""
    try:
        await runs.record_outcome(
            deps.sessionmaker,
            attempt,
            now=utc_now(),
            outcome=AttemptOutcome.FAILED,
            step_state=StepState.FAILED_RETRYABLE,
            error_class=ErrorClass.RETRYABLE,
            error_message=runs.CANCELLED_ATTEMPT,
        )
    except Exception:
        # Left open, the attempt is closed by the next holder as a death, as before this.
        log.warning("could not record the cancelled attempt %s", attempt.id, exc_info=True)


async def _finish_failed(
    deps: WorkerDeps, attempt: StepAttempt, exc: ConnectorError, error_class: ErrorClass
) -> None:
    await runs.record_outcome(
        deps.sessionmaker,
        attempt,
        now=utc_now(),
        outcome=AttemptOutcome.FAILED,
        step_state=StepState.FAILED_TERMINAL,
        error_class=error_class,
        error_message=str(exc),
        http_status=exc.http_status,
    )
