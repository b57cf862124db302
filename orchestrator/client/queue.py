"""The wake-up queue as the API sees it: job names, serialization and enqueueing."""

import json
import logging
from datetime import datetime
from enum import StrEnum
from typing import Any

from arq.connections import ArqRedis, RedisSettings
from arq.constants import health_check_key_suffix
from redis.asyncio import ConnectionPool

from lineage.settings import LineageSettings

log = logging.getLogger(__name__)

QUEUE_NAME = "concord:queue"
# arq's health-check key for the queue: every worker on it overwrites this one key with a line
# like "May-01 12:00:00 j_complete=3 j_failed=0 j_retried=1 j_ongoing=0 queued=2", set to
# expire (health_check_interval + 1) seconds after it is written, and deleted when a worker
# stops cleanly.
HEALTH_CHECK_KEY = QUEUE_NAME + health_check_key_suffix
# The workers' health_check_interval (orchestrator.worker passes the same number to arq).
HEALTH_CHECK_INTERVAL_S = 10
# The sweeper's last run, as JSON {"at": ISO 8601, "found": n, "queued": m}; no expiry.
SWEEPER_LAST_RUN_KEY = "concord:sweeper:last_run"


class JobName(StrEnum):
    RUN_TRANSACTION = "run_transaction"
    SWEEP = "sweep"
    RECONCILE = "reconcile"


class QueueSettings(LineageSettings):
    # Unset: `concord demo` and the tests start an embedded Redis and set this for their children.
    redis_url: str = "redis://127.0.0.1:6379/0"


# Job arguments are IDs and plain values only, so JSON is enough and nothing is unpickled.
def serialize_job(data: dict[str, Any]) -> bytes:
    # default=str: arq stores a failed job's exception as its result; keep its text, not the object.
    return json.dumps(data, separators=(",", ":"), default=str).encode()


def deserialize_job(raw: bytes) -> dict[str, Any]:
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("a job is a JSON object")
    return value


def redis_settings(url: str) -> RedisSettings:
    return RedisSettings.from_dsn(url)


def queue_pool(url: str, *, connect_timeout_s: float = 2.0) -> ArqRedis:
    """An arq Redis client that connects on first use, so a Redis outage never blocks start-up."""
    pool = ConnectionPool.from_url(
        url, socket_connect_timeout=connect_timeout_s, socket_timeout=connect_timeout_s
    )
    return ArqRedis(
        connection_pool=pool,
        job_serializer=serialize_job,
        job_deserializer=deserialize_job,
        default_queue_name=QUEUE_NAME,
    )


_WAKEUP_PREFIX = "tx:"


def wakeup_job_id(correlation_id: str, *, due: str | None = None) -> str:
    # Deterministic: a second wake-up for the same work while one is queued is a no-op.
    base = _WAKEUP_PREFIX + correlation_id
    return base if due is None else f"{base}:{due}"


def wakeup_correlation_id(job_id: str) -> str | None:
    """The transaction a wake-up's job ID names (correlation IDs hold no colon), else None."""
    if not job_id.startswith(_WAKEUP_PREFIX):
        return None
    return job_id[len(_WAKEUP_PREFIX) :].split(":", 1)[0]


async def enqueue_wakeup(
    redis: ArqRedis,
    correlation_id: str,
    *,
    defer_until: datetime | None = None,
    due: str | None = None,
    traceparent: str | None = None,
) -> bool:
    """Ask a worker to look at a transaction. Best effort: False if nothing was queued.

    `traceparent` (W3C) continues the caller's trace in the worker; without one the worker
    starts a trace whose ID is derived from the correlation ID.
    """
    trace: dict[str, Any] = {"traceparent": traceparent} if traceparent else {}
    job = await redis.enqueue_job(
        JobName.RUN_TRANSACTION,
        correlation_id,
        _job_id=wakeup_job_id(correlation_id, due=due),
        _defer_until=defer_until,
        **trace,
    )
    return job is not None


async def try_enqueue_wakeup(
    redis: ArqRedis, correlation_id: str, traceparent: str | None = None
) -> bool:
    """enqueue_wakeup that logs and swallows failures: the sweeper re-enqueues what is missed."""
    try:
        return await enqueue_wakeup(redis, correlation_id, traceparent=traceparent)
    except Exception:
        log.warning(
            "wake-up not queued; the sweeper will pick it up",
            extra={"correlation_id": correlation_id},
            exc_info=True,
        )
        return False
