"""Re-wakes transactions that an enqueue failure, a Redis flush or a dead worker left behind."""

import json
import logging
from datetime import datetime, timedelta

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix

from lineage import runs
from lineage.clock import utc_now
from orchestrator import telemetry
from orchestrator.client.queue import (
    QUEUE_NAME,
    SWEEPER_LAST_RUN_KEY,
    enqueue_wakeup,
    wakeup_correlation_id,
)
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
    waiting = await _waiting_their_turn(deps.redis, stale, now=now) if stale else set()
    for correlation_id in stale:
        if correlation_id in waiting:
            continue
        # Deterministic job IDs make this harmless when a wake-up is already queued.
        if await enqueue_wakeup(deps.redis, correlation_id) or await enqueue_wakeup(
            deps.redis, correlation_id, due=f"sweep{period}"
        ):
            queued += 1
    telemetry.STALE_FOUND.inc(len(stale))
    telemetry.QUEUE_DEPTH.set(await deps.redis.zcard(QUEUE_NAME))
    # What GET /v1/operations shows as the sweeper's last run.
    last_run = {
        "at": now.isoformat(),
        "found": len(stale),
        "queued": queued,
        "already_queued": len(waiting),
    }
    await deps.redis.set(SWEEPER_LAST_RUN_KEY, json.dumps(last_run, separators=(",", ":")))
    if stale:
        log.info(
            "sweeper found %d stale transactions, queued %d, %d already waiting in the queue",
            len(stale),
            queued,
            len(waiting),
        )
    return len(stale)


async def _waiting_their_turn(redis: ArqRedis, stale: list[str], *, now: datetime) -> set[str]:
    """Those of `stale` with a wake-up due in the queue that no worker has taken.

    Behind a backlog every transaction looks stale, and a wake-up per lease period for each
    one (the second ID above) only lengthened the queue the workers were behind on: the demo's
    queue grew by the backlog every 90 s. A worker will reach these; a job that a worker took
    (arq keeps it in the queue with an in-progress key, also when that worker died) or one due
    later than a second from now does not count, so those transactions are woken as before.
    """
    wanted = set(stale)
    # arq scores a job by its due time in milliseconds, rounded; a second of slack keeps one
    # queued a moment before `now` from looking due later.
    due = await redis.zrangebyscore(QUEUE_NAME, "-inf", int(now.timestamp() * 1000) + 1000)
    candidates = [
        (correlation_id, job_id)
        for job_id in (raw.decode() for raw in due)
        if (correlation_id := wakeup_correlation_id(job_id)) in wanted
    ]
    if not candidates:
        return set()
    async with redis.pipeline(transaction=False) as pipe:
        for _, job_id in candidates:
            pipe.exists(in_progress_key_prefix + job_id)
        taken = await pipe.execute()
    return {
        correlation_id
        for (correlation_id, _), busy in zip(candidates, taken, strict=True)
        if not busy
    }
