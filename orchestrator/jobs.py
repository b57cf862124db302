"""arq entry points: thin adapters from job arguments to the engine and the sweeper."""

from typing import Any

from lineage.clock import utc_now
from lineage.correlation import bind_correlation_id
from orchestrator import engine, sweeper
from orchestrator.deps import get_deps
from reconciliation.errors import RunInProgress
from reconciliation.service import reconcile_period
from reconciliation.settings import ReconciliationSettings


async def run_transaction(ctx: dict[str, Any], correlation_id: str) -> str:
    """Advance one transaction's workflow (JobName.RUN_TRANSACTION)."""
    with bind_correlation_id(correlation_id):
        outcome = await engine.run_transaction(get_deps(ctx), correlation_id)
    return outcome.value


async def sweep(ctx: dict[str, Any]) -> int:
    """Re-enqueue stale transactions (JobName.SWEEP, on the cron and at start-up)."""
    deps = get_deps(ctx)
    return await sweeper.sweep_once(deps, min_age_s=deps.settings.sweep_min_age_s)


async def reconcile(ctx: dict[str, Any]) -> int:
    """Reconcile the current period on the schedule (JobName.RECONCILE)."""
    deps = get_deps(ctx)
    period = utc_now().strftime("%Y-%m")
    try:
        return await reconcile_period(
            deps.sessionmaker, ReconciliationSettings(), period=period, trigger="cron"
        )
    except RunInProgress:
        # Another worker's cron (or a person) is already on it.
        return 0
