"""An acknowledged event is never lost: the sweeper wakes what intake could not enqueue."""

import asyncio
import json
from collections import Counter

import httpx
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.main import create_app
from api.settings import ApiSettings
from lineage.enums import TxState
from lineage.models import BusinessTransaction
from orchestrator.client.queue import (
    QUEUE_NAME,
    SWEEPER_LAST_RUN_KEY,
    enqueue_wakeup,
    queue_pool,
    wakeup_correlation_id,
    wakeup_job_id,
)
from orchestrator.settings import OrchestratorSettings
from orchestrator.sweeper import sweep_once
from tests.dbutil import invoice_transaction
from tests.factories import WEBHOOK_SECRET, new_invoice, signed_headers, stripe_event
from tests.fakes import Fakes, fake_deps
from tests.support.ports import free_port_run
from tests.support.servers import serve_in_thread
from tests.workers import run_burst


async def test_event_committed_while_redis_refuses_is_posted_by_the_sweeper(
    database_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    sandbox_url: str,
    worker_settings: OrchestratorSettings,
) -> None:
    # Nothing listens on this port: every enqueue is refused.
    dead_redis = f"redis://127.0.0.1:{free_port_run()}/0"
    settings = ApiSettings(
        database_url=database_url, redis_url=dead_redis, stripe_webhook_secret=WEBHOOK_SECRET
    )
    event = stripe_event(invoice=new_invoice())
    body = json.dumps(event).encode()
    with serve_in_thread(create_app(settings)) as url:
        response = httpx.post(
            f"{url}/v1/webhooks/stripe", content=body, headers=signed_headers(body), timeout=30
        )
    assert response.status_code == 202
    correlation_id = response.json()["correlation_id"]
    async with sessionmaker() as session:
        before = await session.get(BusinessTransaction, correlation_id)
    assert before is not None
    assert before.state is TxState.RECEIVED

    # A worker on a healthy Redis: its start-up sweep finds and runs the transaction.
    await run_burst(worker_settings)

    async with sessionmaker() as session:
        after = await session.get(BusinessTransaction, correlation_id)
    assert after is not None
    assert after.state is TxState.POSTED
    ledger = httpx.get(f"{sandbox_url}/erp/_admin/ledger").json()["records"]
    assert [r["external_id"] for r in ledger] == [event["data"]["object"]["id"]]


async def _backlog(sessionmaker: async_sessionmaker[AsyncSession], count: int) -> list[str]:
    return [await invoice_transaction(sessionmaker, f"in_backlog_{i}") for i in range(count)]


async def test_behind_a_backlog_the_sweeper_adds_no_second_wake_up(
    database_url: str, redis_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # No worker runs: every transaction waits behind the others, and every sweep finds all
    # of them stale. A lease period of 1 s lets two sweeps fall in different periods, where
    # the sweeper used to add a second wake-up per transaction per period.
    stale = await _backlog(sessionmaker, 5)
    pool: ArqRedis = queue_pool(redis_url)
    settings = OrchestratorSettings.model_validate(
        {"database_url": database_url, "redis_url": redis_url, "lease_s": 1}
    )
    deps = fake_deps(settings, sessionmaker, pool, Fakes())
    try:
        assert await sweep_once(deps, min_age_s=0) == len(stale)
        first = await pool.zrange(QUEUE_NAME, 0, -1)
        await asyncio.sleep(1.1)
        assert await sweep_once(deps, min_age_s=0) == len(stale)
        second = await pool.zrange(QUEUE_NAME, 0, -1)
        last_run = json.loads(await pool.get(SWEEPER_LAST_RUN_KEY))
    finally:
        await pool.aclose()

    assert sorted(first) == sorted(wakeup_job_id(c).encode() for c in stale)
    assert sorted(second) == sorted(first)
    assert (last_run["found"], last_run["queued"], last_run["already_queued"]) == (5, 0, 5)


async def test_a_wake_up_held_by_a_dead_worker_gets_a_second_one(
    database_url: str, redis_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # arq keeps a job in the queue while it runs, with an in-progress key; a worker killed
    # mid-job leaves both until the key expires. That transaction must be woken anew now.
    held, waiting = await _backlog(sessionmaker, 2)
    pool: ArqRedis = queue_pool(redis_url)
    settings = OrchestratorSettings.model_validate(
        {"database_url": database_url, "redis_url": redis_url}
    )
    deps = fake_deps(settings, sessionmaker, pool, Fakes())
    try:
        assert await enqueue_wakeup(pool, held)
        assert await enqueue_wakeup(pool, waiting)
        await pool.set(in_progress_key_prefix + wakeup_job_id(held), b"1", px=600_000)
        await sweep_once(deps, min_age_s=0)
        queued = await pool.zrange(QUEUE_NAME, 0, -1)
    finally:
        await pool.aclose()

    by_transaction = Counter(wakeup_correlation_id(job.decode()) for job in queued)
    assert by_transaction == {held: 2, waiting: 1}
