"""Operations: the wake-up queue, worker heartbeats, the sweeper's last run, pressure per target.

The queue and the heartbeats are read from Redis (through the API's arq pool), the pressure
per target from lineage. Redis being down answers 503 in the error shape, never a 500.
"""

import json
import re
from datetime import datetime, timedelta
from typing import Any

from arq.connections import ArqRedis
from fastapi import APIRouter
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import SessionDep, StateDep, ViewerDep
from api.errors import GUARDED, ApiError
from api.schemas import (
    ErrorBody,
    OperationsRead,
    QueueDepthRead,
    SweeperRunRead,
    TargetPressureRead,
    WorkerHealthRead,
    WorkersRead,
)
from lineage.clock import utc_now
from lineage.enums import TxState
from lineage.models import BusinessTransaction, WorkflowStep
from orchestrator.client.queue import (
    HEALTH_CHECK_INTERVAL_S,
    HEALTH_CHECK_KEY,
    QUEUE_NAME,
    SWEEPER_LAST_RUN_KEY,
)

router = APIRouter(
    prefix="/v1/operations",
    tags=["operations"],
    responses={
        **GUARDED,
        503: {"model": ErrorBody, "description": "Redis (the queue) did not answer."},
    },
)

NO_WORKER = "no worker reported"
NO_SWEEP = "no sweeper run recorded"
# States whose transactions press on a target: waiting to retry it, on it now, or given up.
PRESSURE_STATES = (TxState.RETRYING, TxState.RUNNING, TxState.EXCEPTION)
_COUNTER = re.compile(r"(\w+)=(-?\d+)")


def _text(raw: Any) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


def _worker(value: Any, ttl_ms: int, now: datetime) -> WorkerHealthRead:
    line = _text(value)
    # PTTL: -1 no expiry (not arq's), -2 gone since the GET; either way no age from it.
    ttl = ttl_ms if ttl_ms >= 0 else None
    age_s = None if ttl is None else max(0.0, HEALTH_CHECK_INTERVAL_S + 1 - ttl / 1000)
    return WorkerHealthRead(
        key=HEALTH_CHECK_KEY,
        value=line,
        ttl_ms=ttl,
        age_s=age_s,
        last_heartbeat_at=None if age_s is None else now - timedelta(seconds=age_s),
        counters={k: int(v) for k, v in _COUNTER.findall(line)},
    )


def _sweeper(raw: Any, now: datetime) -> tuple[SweeperRunRead | None, str | None]:
    if raw is None:
        return None, NO_SWEEP
    try:
        body = json.loads(_text(raw))
        at = datetime.fromisoformat(body["at"])
        return SweeperRunRead(
            at=at,
            found=int(body["found"]),
            queued=int(body["queued"]),
            already_queued=int(body.get("already_queued", 0)),
            age_s=max(0.0, (now - at).total_seconds()),
        ), None
    except (ValueError, TypeError, KeyError):
        return None, f"the sweeper's record in {SWEEPER_LAST_RUN_KEY} is unreadable"


async def _read_redis(redis: ArqRedis, now: datetime) -> tuple[QueueDepthRead, list[Any]]:
    now_ms = int(now.timestamp() * 1000)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcard(QUEUE_NAME)
        pipe.zcount(QUEUE_NAME, "-inf", now_ms)
        pipe.zrangebyscore(QUEUE_NAME, f"({now_ms}", "+inf", start=0, num=1, withscores=True)
        pipe.get(HEALTH_CHECK_KEY)
        pipe.pttl(HEALTH_CHECK_KEY)
        pipe.get(SWEEPER_LAST_RUN_KEY)
        total, ready, first_deferred, *rest = await pipe.execute()
    next_at = None
    if first_deferred:
        _job, score = first_deferred[0]
        next_at = datetime.fromtimestamp(float(score) / 1000, tz=now.tzinfo)
    queue = QueueDepthRead(
        name=QUEUE_NAME,
        total=int(total),
        ready=int(ready),
        deferred=int(total) - int(ready),
        next_deferred_at=next_at,
    )
    return queue, rest


async def _by_target(session: AsyncSession) -> list[TargetPressureRead]:
    """Transactions in a pressure state, counted by the target of their latest step."""
    tx = BusinessTransaction
    latest = (
        select(WorkflowStep.correlation_id, func.max(WorkflowStep.id).label("step_id"))
        .join(tx, tx.correlation_id == WorkflowStep.correlation_id)
        .where(tx.state.in_(PRESSURE_STATES))
        .group_by(WorkflowStep.correlation_id)
        .subquery()
    )
    rows = await session.execute(
        select(WorkflowStep.target_system, tx.state, func.count())
        .select_from(latest)
        .join(WorkflowStep, WorkflowStep.id == latest.c.step_id)
        .join(tx, tx.correlation_id == latest.c.correlation_id)
        .group_by(WorkflowStep.target_system, tx.state)
    )
    found = [
        TargetPressureRead(target_system=target, state=state, transactions=int(count))
        for target, state, count in rows
    ]
    return sorted(found, key=lambda r: (r.target_system.value, r.state.value))


@router.get("")
async def operations(session: SessionDep, state: StateDep, _principal: ViewerDep) -> OperationsRead:
    """Queue depth (ready and deferred), worker heartbeats, the sweeper's last run, and
    transactions retrying, running or in exception by the target of their latest step."""
    now = utc_now()
    try:
        queue, (health, ttl_ms, last_run) = await _read_redis(state["arq"], now)
    except (RedisError, OSError) as exc:
        raise ApiError(
            503,
            "redis_unavailable",
            "Redis did not answer, so the queue, worker health and sweeper are unknown",
            details={"error": type(exc).__name__},
        ) from exc
    reported = [] if health is None else [_worker(health, int(ttl_ms), now)]
    sweeper, sweeper_note = _sweeper(last_run, now)
    return OperationsRead(
        checked_at=now,
        queue=queue,
        workers=WorkersRead(
            health_check_interval_s=HEALTH_CHECK_INTERVAL_S,
            reported=reported,
            note=None if reported else NO_WORKER,
        ),
        sweeper=sweeper,
        sweeper_note=sweeper_note,
        by_target=await _by_target(session),
    )
