"""A Redis that freezes mid-run (SIGSTOP, then SIGCONT) loses nothing and posts nothing twice.

A paused Redis keeps its sockets open but answers nothing: clients see timeouts rather than
refused connections, which is the harder case for a worker's reconnect logic.
"""

import asyncio
import os
import signal

import redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from concord.embedded_redis import EmbeddedRedis
from tests.chaos.harness import EVENTS, running_system, wait_posted
from tests.chaos.history import SETTLE_S, History, left_running

PAUSE_S = 8


async def test_redis_paused_mid_run_loses_and_doubles_nothing(
    database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    server = EmbeddedRedis().start()
    # The server's own PID, from the server: the test signals exactly that process.
    info: dict[str, object] = redis.Redis.from_url(server.url).info("server")  # type: ignore[assignment]
    pid = int(str(info["process_id"]))
    history = History()
    try:
        with running_system(database_url, server.url) as system:
            system.start_worker()
            system.start_worker()
            first = asyncio.create_task(history.send_invoices(system, EVENTS // 2))
            await wait_posted(sessionmaker, EVENTS // 10, timeout_s=120)
            os.kill(pid, signal.SIGSTOP)
            try:
                # Intake keeps committing while Redis is frozen: its wake-ups are lost, or late.
                await history.send_invoices(system, EVENTS - EVENTS // 2)
                await asyncio.sleep(PAUSE_S)
            finally:
                os.kill(pid, signal.SIGCONT)
            await first

            posted = await wait_posted(sessionmaker, len(history.acked), timeout_s=SETTLE_S)
            verdict = await history.verdict(system, sessionmaker)

            assert posted == len(history.acked) == EVENTS, verdict.summary()
            verdict.assert_ok()
            assert await left_running(sessionmaker) == 0
            assert all(worker.poll() is None for worker in system.workers)
    finally:
        server.stop()
