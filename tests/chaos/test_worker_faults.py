"""Killed workers, a restarted Redis and a flushed Redis lose nothing and post nothing twice."""

import asyncio
import signal

import redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concord.embedded_redis import EmbeddedRedis
from tests.chaos.harness import (
    EVENTS,
    assert_posted_exactly_once,
    running_system,
    send_invoices,
    wait_posted,
)
from tests.chaos.history import verdict_for_invoices


async def test_sigkilled_worker_mid_run_loses_and_doubles_nothing(
    database_url: str, redis_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    with running_system(database_url, redis_url) as system:
        sending = asyncio.create_task(send_invoices(system, EVENTS))
        victim = system.start_worker()
        await wait_posted(sessionmaker, EVENTS // 5, timeout_s=120)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        invoice_ids = await sending
        system.start_worker()

        posted = await wait_posted(sessionmaker, EVENTS)

        assert posted == EVENTS
        assert_posted_exactly_once(system, invoice_ids)
        (await verdict_for_invoices(system, sessionmaker, invoice_ids)).assert_ok()


async def test_redis_restart_mid_run_loses_and_doubles_nothing(
    database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    server = EmbeddedRedis().start()
    try:
        with running_system(database_url, server.url) as system:
            system.start_worker()
            invoice_ids = await send_invoices(system, EVENTS)
            await wait_posted(sessionmaker, EVENTS // 5, timeout_s=120)
            # Down, then back on the same port with nothing kept: a restart without persistence.
            server.stop()
            await asyncio.sleep(2)
            server = EmbeddedRedis(port=server.port, password=server.password).start()

            posted = await wait_posted(sessionmaker, EVENTS)

            assert posted == EVENTS
            assert_posted_exactly_once(system, invoice_ids)
            (await verdict_for_invoices(system, sessionmaker, invoice_ids)).assert_ok()
            assert all(worker.poll() is None for worker in system.workers)
    finally:
        server.stop()


async def test_redis_flushed_mid_run_loses_and_doubles_nothing(
    database_url: str, redis_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    with running_system(database_url, redis_url) as system:
        invoice_ids = await send_invoices(system, EVENTS)
        system.start_worker()
        await wait_posted(sessionmaker, EVENTS // 5, timeout_s=120)
        redis.Redis.from_url(redis_url).flushdb()

        posted = await wait_posted(sessionmaker, EVENTS)

        assert posted == EVENTS
        assert_posted_exactly_once(system, invoice_ids)
        (await verdict_for_invoices(system, sessionmaker, invoice_ids)).assert_ok()
