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
    # A wake-up taken by a worker that then died keeps its job ID in arq until the job's
    # in-progress key expires (the longest job timeout, the reconcile cron's 600 s, plus 10 s),
    # so re-enqueueing that ID does nothing meanwhile. A second ID, one per lease period,
    # wakes such a transaction now; the claim keeps any duplicate wake-up harmless.
    period = int(now.timestamp() // max(deps.settings.lease_s, 1))
    for correlation_id in stale:
        # Deterministic job IDs make this harmless when a wake-up is already queued.
        if await enqueue_wakeup(deps.redis, correlation_id) or await enqueue_wakeup(
            deps.redis, correlation_id, due=f"sweep{period}"
        ):
            queued += 1
    telemetry.STALE_FOUND.inc(len(stale))
    telemetry.QUEUE_DEPTH.set(await deps.redis.zcard(QUEUE_NAME))
    # What GET /v1/operations shows as the sweeper's last run.
    last_run = {"at": now.isoformat(), "found": len(stale), "queued": queued}
    await deps.redis.set(SWEEPER_LAST_RUN_KEY, json.dumps(last_run, separators=(",", ":")))
    if stale:
        log.info("sweeper found %d stale transactions, queued %d", len(stale), queued)
    return len(stale)
