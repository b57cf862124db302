"""Re-wakes transactions that an enqueue failure, a Redis flush or a dead worker left behind."""

import json
import logging
from datetime import timedelta

from lineage import runs
from lineage.clock import utc_now
from orchestrator import telemetry
from orchestrator.client.queue import QUEUE_NAME, SWEEPER_LAST_RUN_KEY, enqueue_wakeup
from orchestrator.deps import WorkerDeps

log = logging.getLogger(__name__)


async def sweep_once(deps: WorkerDeps, *, min_age_s: float) -> int:
    """Enqueue a wake-up for every stale active transaction; returns how many were found."""
    now = utc_now()
    async with deps.sessionmaker() as session:
        stale = await runs.stale_transactions(
            session, now=now, older_than=now - timedelta(seconds=min_age_s)
        )
    queued = 0
    for correlation_id in stale:
        # Deterministic job IDs make this harmless when a wake-up is already queued.
        if await enqueue_wakeup(deps.redis, correlation_id):
            queued += 1
    telemetry.STALE_FOUND.inc(len(stale))
    telemetry.QUEUE_DEPTH.set(await deps.redis.zcard(QUEUE_NAME))
    # What GET /v1/operations shows as the sweeper's last run.
    last_run = {"at": now.isoformat(), "found": len(stale), "queued": queued}
    await deps.redis.set(SWEEPER_LAST_RUN_KEY, json.dumps(last_run, separators=(",", ":")))
    if stale:
        log.info("sweeper found %d stale transactions, queued %d", len(stale), queued)
    return len(stale)
