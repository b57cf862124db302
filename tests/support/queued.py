"""Waiting out intake's wake-up: the API queues it in a background task after its answer, so a
burst worker started the moment the answer arrives could find the queue empty, stop, and leave
the transaction unrun, or run it through its start-up sweep and leave the late wake-up behind
in the queue (both seen on a loaded CI machine). In production the sweeper covers the first
and the second is a no-op job; a test that counts runs or queue entries must wait."""

import asyncio
import time
from collections.abc import Iterable

import httpx
import redis.asyncio as aioredis
from arq.constants import in_progress_key_prefix, job_key_prefix

from orchestrator.client.queue import wakeup_job_id


async def wakeups_queued(
    redis_url: str,
    correlation_ids: Iterable[str],
    *,
    api: httpx.AsyncClient,
    key: str,
    timeout_s: float = 10.0,
) -> None:
    """Until each transaction's wake-up job is queued or running, or the transaction has left
    `received` (a worker running alongside took the job and finished it), as the API at `api`
    tells a reader with `key`."""
    deadline = time.monotonic() + timeout_s
    async with aioredis.Redis.from_url(redis_url) as redis:
        for correlation_id in correlation_ids:
            job_id = wakeup_job_id(correlation_id)
            while not await redis.exists(job_key_prefix + job_id, in_progress_key_prefix + job_id):
                response = await api.get(
                    f"/v1/transactions/{correlation_id}", headers={"Authorization": f"Bearer {key}"}
                )
                assert response.status_code == 200, response.text
                if response.json()["state"] != "received":
                    break
                assert time.monotonic() < deadline, f"{correlation_id}: wake-up never queued"
                await asyncio.sleep(0.005)
