"""The API dies between committing an event and queueing its wake-up: nothing is lost.

The client of a crashed request gets no answer (its outcome is unknown), redelivers the same
event as Stripe would, and is then told 2xx, a duplicate of the stored one. The sweeper, not
the lost wake-up, gets every committed event posted. A second test keeps the API up but makes
every enqueue fail (its Redis is unreachable), so only the sweeper ever wakes anything.
"""

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.main import create_app
from api.settings import ApiSettings
from tests.chaos.harness import EVENTS, System, running_system, wait_posted
from tests.chaos.history import SETTLE_S, History, left_running
from tests.factories import WEBHOOK_SECRET
from tests.support.ports import free_port_run
from tests.support.servers import serve_in_thread

CRASH_PREFIX = "evt_crash_"
CRASHES = 3


@contextmanager
def api_process(
    system: System, log: Path, *, fault: str = f"crash:{CRASH_PREFIX}"
) -> Iterator[subprocess.Popen[bytes]]:
    """`concord api` as a process that may really die (with the after-commit fault armed),
    its JSON log lines appended to `log`; points `system.api_url` at it."""
    port = free_port_run()
    env = {
        **system.worker_env(),
        "CONCORD_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "CONCORD_FAULT_AFTER_COMMIT": fault,
    }
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "concord", "api", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()[-2000:]
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.1)
        system.api_url = url
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


async def test_api_killed_between_commit_and_enqueue_loses_nothing(
    database_url: str,
    redis_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    history = History()
    batch = max(10, EVENTS // CRASHES)
    with running_system(database_url, redis_url) as system:
        system.start_worker()
        system.start_worker()
        exits: list[int | None] = []
        for _ in range(CRASHES):
            with api_process(system, tmp_path / "api.log") as api:
                await asyncio.gather(
                    history.send_invoices(system, batch),
                    history.send_invoices(system, 1, event_prefix=CRASH_PREFIX),
                )
                exits.append(api.wait(timeout=30))
        crashed = [s for s in history.sends if s.event_id.startswith(CRASH_PREFIX)]
        unknown = [s for s in history.sends if s.unknown]

        with api_process(system, tmp_path / "api.log"):
            redelivered = await history.redeliver(system, unknown)
            posted = await wait_posted(sessionmaker, len(history.sends), timeout_s=SETTLE_S)
        verdict = await history.verdict(system, sessionmaker)

    assert exits == [70] * CRASHES
    # The crashing requests got no answer, and their redeliveries were told 2xx.
    assert {s.event_id for s in crashed} <= {s.event_id for s in unknown}
    assert [s for s in redelivered if not s.acked] == []
    assert len(history.acked) == len(history.sends) == CRASHES * (batch + 1)
    assert posted == len(history.sends), verdict.summary()
    verdict.assert_ok()
    assert await left_running(sessionmaker) == 0


async def test_an_api_whose_enqueues_all_fail_still_gets_every_event_posted(
    database_url: str, redis_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # Nothing listens on this port: every wake-up the intake tries is lost after the commit.
    dead_redis = f"redis://127.0.0.1:{free_port_run()}/0"
    settings = ApiSettings(
        database_url=database_url, redis_url=dead_redis, stripe_webhook_secret=WEBHOOK_SECRET
    )
    history = History()
    count = max(30, EVENTS // 3)
    with (
        running_system(database_url, redis_url) as system,
        serve_in_thread(create_app(settings)) as api,
    ):
        system.api_url = api
        system.start_worker()
        await history.send_invoices(system, count)
        posted = await wait_posted(sessionmaker, count, timeout_s=SETTLE_S)
        verdict = await history.verdict(system, sessionmaker)

    assert len(history.acked) == count
    assert posted == count, verdict.summary()
    verdict.assert_ok()
