"""Runs one transaction's workflow: claim, step by step, record every attempt, settle.

The database is the source of truth; arq only wakes us. Every outcome is committed before the
next call goes out, so a worker killed at any point leaves lineage a successor can resume from.
"""

import logging
import random
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from pydantic import BaseModel

from lineage import runs
from lineage.clock import utc_now
from lineage.enums import AttemptOutcome, ErrorClass, StepState, TxState
from lineage.models import StepAttempt
from lineage.runs import Claim
from orchestrator.client.queue import enqueue_wakeup
from orchestrator.connectors.errors import Conflict, ConnectorError, Retryable
from orchestrator.connectors.ports import CallContext, TargetRecord
from orchestrator.deps import WorkerDeps
from orchestrator.workflows import WORKFLOWS, StepSpec

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    POSTED = "posted"
    RETRY_SCHEDULED = "retry_scheduled"
    EXCEPTION = "exception"
    NOT_CLAIMED = "not_claimed"


@dataclass(frozen=True, slots=True)
class _StepResult:
    done: bool
    outcome: Outcome | None = None


def backoff_s(attempt: int, *, base_s: float, cap_s: float, retry_after_s: float | None) -> float:
    """Exponential backoff with jitter, never earlier than the target's Retry-After."""
    delay = min(cap_s, base_s * 2.0 ** (attempt - 1)) * random.uniform(0.5, 1.0)
    return max(delay, retry_after_s or 0.0)


async def run_transaction(deps: WorkerDeps, correlation_id: str) -> Outcome:
    """Advance one transaction as far as it can go now; idempotent and safe to call twice."""
    now = utc_now()
    async with deps.sessionmaker.begin() as session:
        claimed = await runs.claim(
            session,
            correlation_id,
            owner=deps.settings.worker_id,
            lease_until=now + timedelta(seconds=deps.settings.lease_s),
            now=now,
        )
    if claimed is None:
        return Outcome.NOT_CLAIMED
    spec = WORKFLOWS.get(claimed.transaction.workflow or "")
    if spec is None:
        return await _fail(
            deps,
            claimed,
            None,
            "mapping_missing",
            f"no workflow named {claimed.transaction.workflow!r} is defined",
            "deploy the workflow definition, then replay",
        )
    data = spec.input_model.model_validate(
        claimed.run.input_override or claimed.transaction.canonical
    )
    names = [step.name for step in spec.steps]
    # A replay from a named step leaves the steps before it as the earlier run left them.
    first = names.index(claimed.run.from_step) if claimed.run.from_step in names else 0
    for step in spec.steps[first:]:
        if claimed.step_states.get(step.name) is StepState.SUCCEEDED:
            continue
        result = await _run_step(deps, claimed, step, data)
        if not result.done:
            assert result.outcome is not None
            return result.outcome
    async with deps.sessionmaker.begin() as session:
        await runs.settle(session, claimed, state=TxState.POSTED, now=utc_now())
    return Outcome.POSTED


async def _run_step(
    deps: WorkerDeps, claimed: Claim, step: StepSpec, data: BaseModel
) -> _StepResult:
    correlation_id = claimed.transaction.correlation_id
    ctx = CallContext(
        correlation_id=correlation_id, idempotency_key=f"{correlation_id}:{step.name}"
    )
    external_id = step.external_id(data)
    async with deps.sessionmaker.begin() as session:
        attempt = await runs.start_attempt(
            session,
            run_id=claimed.run.id,
            correlation_id=correlation_id,
            name=step.name,
            target=step.target,
            idempotency_key=ctx.idempotency_key,
            external_id=external_id,
            now=utc_now(),
        )
    try:
        record, found = await _call(deps, step, data, ctx, external_id, first=attempt.number == 1)
    except Retryable as exc:
        return await _retry_or_fail(deps, claimed, step, attempt, exc)
    except ConnectorError as exc:
        async with deps.sessionmaker.begin() as session:
            await runs.finish_attempt(
                session,
                attempt,
                now=utc_now(),
                outcome=AttemptOutcome.FAILED,
                step_state=StepState.FAILED_TERMINAL,
                error_class=exc.error_class,
                error_message=str(exc),
                http_status=exc.http_status,
            )
        return _StepResult(
            False,
            await _fail(
                deps,
                claimed,
                attempt.step_id,
                exc.classification,
                f"{step.name}: {exc}",
                "fix the cause named in the message, then replay",
            ),
        )
    async with deps.sessionmaker.begin() as session:
        await runs.finish_attempt(
            session,
            attempt,
            now=utc_now(),
            outcome=AttemptOutcome.FOUND_EXISTING if found else AttemptOutcome.SUCCEEDED,
            step_state=StepState.SUCCEEDED,
            http_status=record.http_status,
            target_ref=record.record_id,
        )
        await runs.add_external_ref(
            session,
            correlation_id,
            system=record.system,
            object_type=record.object_type,
            external_id=record.record_id,
        )
    return _StepResult(True)


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
    if not first:
        existing = await step.lookup(deps, external_id, ctx)
        if existing is not None:
            return existing, True
    try:
        return await step.action(deps, data, ctx), False
    except Conflict as exc:
        existing = await step.lookup(deps, external_id, ctx)
        if existing is None:
            raise ConnectorError(
                f"the target reported {external_id} as existing but does not return it",
                http_status=exc.http_status,
            ) from exc
        return existing, True


async def _retry_or_fail(
    deps: WorkerDeps, claimed: Claim, step: StepSpec, attempt: StepAttempt, exc: Retryable
) -> _StepResult:
    settings = deps.settings
    now = utc_now()
    if attempt.number >= settings.max_attempts:
        async with deps.sessionmaker.begin() as session:
            await runs.finish_attempt(
                session,
                attempt,
                now=now,
                outcome=AttemptOutcome.FAILED,
                step_state=StepState.FAILED_TERMINAL,
                error_class=ErrorClass.RETRYABLE,
                error_message=str(exc),
                http_status=exc.http_status,
            )
        return _StepResult(
            False,
            await _fail(
                deps,
                claimed,
                attempt.step_id,
                "budget_exhausted",
                f"{step.name}: {attempt.number} attempts failed; last: {exc}",
                "check the target system's health, then replay",
            ),
        )
    delay = backoff_s(
        attempt.number,
        base_s=settings.retry_base_s,
        cap_s=settings.retry_cap_s,
        retry_after_s=exc.retry_after_s,
    )
    due = now + timedelta(seconds=delay)
    async with deps.sessionmaker.begin() as session:
        await runs.finish_attempt(
            session,
            attempt,
            now=now,
            outcome=AttemptOutcome.FAILED,
            step_state=StepState.FAILED_RETRYABLE,
            error_class=ErrorClass.RETRYABLE,
            error_message=str(exc),
            http_status=exc.http_status,
            next_attempt_at=due,
        )
        await runs.settle(
            session,
            claimed,
            state=TxState.RETRYING,
            now=now,
            next_attempt_at=due,
            reason=f"{step.name} retries at {due.isoformat()} ({exc.classification})",
        )
    try:
        await enqueue_wakeup(
            deps.redis,
            claimed.transaction.correlation_id,
            defer_until=due,
            due=f"{step.name}:{attempt.number}",
        )
    except Exception:
        log.warning("retry not queued; the sweeper will wake it when due", exc_info=True)
    return _StepResult(False, Outcome.RETRY_SCHEDULED)


async def _fail(
    deps: WorkerDeps,
    claimed: Claim,
    step_id: int | None,
    classification: str,
    message: str,
    action: str,
) -> Outcome:
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
        await runs.settle(session, claimed, state=TxState.EXCEPTION, now=utc_now(), reason=message)
    return Outcome.EXCEPTION
