"""arq entry points: thin adapters from job arguments to the engine and the sweeper."""

from datetime import timedelta
from typing import Any

from opentelemetry import context as otel_context

from lineage.clock import utc_now
from lineage.correlation import bind_correlation_id
from orchestrator import engine, sweeper, usage
from orchestrator.client.queue import try_enqueue_wakeup
from orchestrator.client.tracing import context_from
from orchestrator.connectors.http import traceparent as derived_traceparent
from orchestrator.deps import get_deps
from reconciliation.schedule import reconcile_due
from reconciliation.settings import ReconciliationSettings


async def run_transaction(
    ctx: dict[str, Any], correlation_id: str, traceparent: str | None = None
) -> str:
    """Advance one transaction's workflow (JobName.RUN_TRANSACTION).

    The run joins the trace the event arrived with; jobs queued without one (the sweeper's)
    join the trace derived from the correlation ID, which outbound calls also fall back to.
    """
    parent = context_from(traceparent) or context_from(derived_traceparent(correlation_id))
    token = otel_context.attach(parent) if parent is not None else None
    try:
        with bind_correlation_id(correlation_id):
            outcome = await engine.run_transaction(get_deps(ctx), correlation_id)
    finally:
        if token is not None:
            otel_context.detach(token)
    return outcome.value


async def sweep(ctx: dict[str, Any]) -> int:
    """Re-enqueue stale transactions (JobName.SWEEP, on the cron and at start-up)."""
    deps = get_deps(ctx)
    return await sweeper.sweep_once(deps, min_age_s=deps.settings.sweep_min_age_s)


async def reconcile(ctx: dict[str, Any]) -> int:
    """Reconcile the months due (reconciliation/schedule.py) (JobName.RECONCILE)."""
    deps = get_deps(ctx)
    settings = deps.settings
    runs = await reconcile_due(
        deps.sessionmaker,
        ReconciliationSettings(),
        now=utc_now(),
        # Twice the schedule's spacing: a change is inside the window of at least one run that
        # starts after it committed, even if that run was late.
        window=timedelta(minutes=2 * max(1, settings.reconcile_every_min)),
        limit=settings.reconcile_max_periods,
    )
    return len(runs)


# The cron's job name; not in JobName, since nothing but the worker's own cron enqueues it.
SUMMARISE_USAGE = "summarise_usage"


async def summarise_usage(ctx: dict[str, Any]) -> int:
    """Turn each closed period's usage into one summary transaction, then wake them."""
    deps = get_deps(ctx)
    created = await usage.summarise_closed_periods(
        deps.sessionmaker, now=utc_now(), grace=timedelta(seconds=deps.settings.usage_grace_s)
    )
    for correlation_id in created:
        # Best effort: the sweeper wakes any summary this misses.
        await try_enqueue_wakeup(deps.redis, correlation_id)
    return len(created)
