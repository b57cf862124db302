"""The wake-up queue as the API sees it: job names, serialization and enqueueing."""

import json
import logging
from datetime import datetime
from enum import StrEnum
from typing import Any

from arq.connections import ArqRedis, RedisSettings
from redis.asyncio import ConnectionPool

from lineage.settings import LineageSettings

log = logging.getLogger(__name__)

QUEUE_NAME = "concord:queue"


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


def wakeup_job_id(correlation_id: str, *, due: str | None = None) -> str:
    # Deterministic: a second wake-up for the same work while one is queued is a no-op.
    return f"tx:{correlation_id}" if due is None else f"tx:{correlation_id}:{due}"


async def enqueue_wakeup(
    redis: ArqRedis,
    correlation_id: str,
    *,
    defer_until: datetime | None = None,
    due: str | None = None,
) -> bool:
    """Ask a worker to look at a transaction. Best effort: False if nothing was queued."""
    job = await redis.enqueue_job(
        JobName.RUN_TRANSACTION,
        correlation_id,
        _job_id=wakeup_job_id(correlation_id, due=due),
        _defer_until=defer_until,
    )
    return job is not None


async def try_enqueue_wakeup(redis: ArqRedis, correlation_id: str) -> bool:
    """enqueue_wakeup that logs and swallows failures: the sweeper re-enqueues what is missed."""
    try:
        return await enqueue_wakeup(redis, correlation_id)
    except Exception:
        log.warning(
            "wake-up not queued; the sweeper will pick it up",
            extra={"correlation_id": correlation_id},
            exc_info=True,
        )
        return False
