"""A poison event, whose handling kills the worker process, is isolated in the exception queue
after its retry budget while every other event flows and posts exactly once."""

import asyncio
import contextlib
import time

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.enums import Role
from tests.chaos.harness import EVENTS, System, running_system, wait_posted
from tests.chaos.history import SETTLE_S, History, left_running
from tests.factories import new_invoice

MAX_ATTEMPTS = 3
WORKERS = 2


async def _supervise(system: System, env: dict[str, str], crashes: list[int]) -> None:
    """Restart dead workers, as a process supervisor would, and count the deaths."""
    while True:
        for process in list(system.workers):
            if process.poll() is not None and process.returncode != 0:
                crashes.append(process.returncode)
                system.workers.remove(process)
                system.start_worker(**env)
        await asyncio.sleep(0.2)


async def _open_exceptions(system: System, key: str) -> list[dict[str, object]]:
    async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as client:
        response = await client.get(
            "/v1/exceptions", params={"limit": 500}, headers={"Authorization": f"Bearer {key}"}
        )
    assert response.status_code == 200, response.text
    items: list[dict[str, object]] = response.json()["items"]
    return items


async def test_a_poison_event_is_isolated_and_the_rest_flow(
    database_url: str,
    redis_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    api_keys: dict[Role, str],
) -> None:
    poison = str(new_invoice()["id"])
    env = {"CONCORD_FAULT_CRASH_INVOICE": poison, "CONCORD_MAX_ATTEMPTS": str(MAX_ATTEMPTS)}
    history = History()
    crashes: list[int] = []
    with running_system(database_url, redis_url) as system:
        for _ in range(WORKERS):
            system.start_worker(**env)
        supervisor = asyncio.create_task(_supervise(system, env, crashes))
        try:
            await history.send_invoices(system, EVENTS // 2)
            [poisoned] = await history.send_invoices(system, 1, invoice={"id": poison})
            await history.send_invoices(system, EVENTS - EVENTS // 2)

            # Each crash also takes down the other transactions in flight on that worker: they
            # wait out their lease before the sweeper wakes them, hence the longer allowance.
            deadline = time.monotonic() + SETTLE_S * 1.5
            posted = await wait_posted(sessionmaker, EVENTS, timeout_s=SETTLE_S * 1.5)
            while True:
                queued = await _open_exceptions(system, api_keys[Role.VIEWER])
                if queued or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
        finally:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor

        effects = await history.effects(system, sessionmaker)
        verdict = history.check(effects, exempt={poison})
        [(poison_cid, _state, _invoice)] = effects.transactions[poisoned.event_id]

        assert posted == EVENTS, verdict.summary()
        verdict.assert_ok()
        # Isolated: one exception, for the poison alone, after exactly its budget of crashes.
        assert [(i["correlation_id"], i["classification"]) for i in queued] == [
            (poison_cid, "worker_crash")
        ]
        assert crashes == [70] * MAX_ATTEMPTS
        assert effects.erp[poison] == 0
        assert await left_running(sessionmaker) == 0
