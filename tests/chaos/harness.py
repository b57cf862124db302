"""A running system for fault tests: sandbox ERP and API in threads, workers as processes."""

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.main import create_app
from api.settings import ApiSettings
from lineage.enums import TxState
from lineage.models import BusinessTransaction
from sandbox.app import create_sandbox_app
from tests.factories import WEBHOOK_SECRET, new_invoice, signed_headers, stripe_event
from tests.support.servers import serve_in_thread

# Scale with CONCORD_CHAOS_EVENTS (`make chaos` raises it); CI runs the size the issue names.
EVENTS = int(os.environ.get("CONCORD_CHAOS_EVENTS", "300"))
# Set, each worker's log (JSON lines) is kept there for a post-mortem, one file per test and
# worker; unset, workers log nowhere.
LOG_DIR = os.environ.get("CONCORD_CHAOS_LOG_DIR", "")


def _worker_log(index: int) -> IO[bytes] | None:
    if not LOG_DIR:
        return None
    test = os.environ.get("PYTEST_CURRENT_TEST", "outside-a-test").split(" ")[0]
    name = re.sub(r"[^\w.-]+", "_", test)
    return (Path(LOG_DIR) / f"{name}.worker{index}.log").open("ab")


# Port 0: the kernel picks the metrics port when the worker binds it. A port picked beforehand
# can be taken in between (as the local end of any outgoing connection), and the worker then
# dies at start, leaving a scenario to wait out pytest's timeout.
WORKER_COMMAND = [sys.executable, "-m", "concord", "worker", "--port", "0"]


@dataclass
class System:
    database_url: str
    redis_url: str
    api_url: str
    erp_url: str
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def worker_env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "CONCORD_DATABASE_URL": self.database_url,
            "CONCORD_REDIS_URL": self.redis_url,
            "CONCORD_ERP_URL": self.erp_url,
            # Every sandbox system, so subscription and payment workflows reach theirs too.
            "CONCORD_CRM_URL": self.erp_url.removesuffix("/erp") + "/crm",
            "CONCORD_PROVISIONING_URL": self.erp_url.removesuffix("/erp") + "/provisioning",
            "CONCORD_SUPPORT_URL": self.erp_url.removesuffix("/erp") + "/support",
            "CONCORD_ANALYTICS_URL": self.erp_url.removesuffix("/erp") + "/analytics",
            "CONCORD_OUTBOUND_ALLOWLIST": "127.0.0.1",
            # Short leases and a fast sweeper, so recovery shows within a test's patience.
            "CONCORD_JOB_TIMEOUT_S": "5",
            "CONCORD_LEASE_S": "6",
            "CONCORD_SWEEP_EVERY_S": "1",
            "CONCORD_SWEEP_MIN_AGE_S": "1",
            "CONCORD_RETRY_BASE_S": "0.2",
            "CONCORD_RETRY_CAP_S": "1",
            "CONCORD_RATE_LIMITS": "{}",
            **extra,
        }

    def start_worker(self, **extra: str) -> subprocess.Popen[bytes]:
        log = _worker_log(len(self.workers))
        try:
            process = subprocess.Popen(
                WORKER_COMMAND,
                env=self.worker_env(**extra),
                stdout=subprocess.DEVNULL,
                stderr=log or subprocess.DEVNULL,
            )
        finally:
            if log is not None:
                log.close()  # the worker holds its own copy
        self.workers.append(process)
        return process

    def stop_workers(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.workers:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def ledger(self) -> list[dict[str, object]]:
        records: list[dict[str, object]] = httpx.get(f"{self.erp_url}/_admin/ledger").json()[
            "records"
        ]
        return records


@contextmanager
def running_system(database_url: str, redis_url: str, *, faults: str = "") -> Iterator[System]:
    settings = ApiSettings(
        database_url=database_url, redis_url=redis_url, stripe_webhook_secret=WEBHOOK_SECRET
    )
    with (
        serve_in_thread(create_sandbox_app(faults=faults)) as sandbox,
        serve_in_thread(create_app(settings)) as api,
    ):
        system = System(database_url, redis_url, api, f"{sandbox}/erp")
        try:
            yield system
        except BaseException as failure:
            # A scenario that failed or timed out says which workers had died, and how.
            failure.add_note(f"worker exit codes: {[worker.poll() for worker in system.workers]}")
            raise
        finally:
            system.stop_workers()


async def deliver_webhook(client: httpx.AsyncClient, body: bytes) -> httpx.Response:
    """POST a signed Stripe event as Stripe does: a 503 with Retry-After (the API's answer when
    its database pool stays busy; nothing was stored) is delivered again after that wait, at
    most three times, so that a system that stays overloaded fails the scenario, not hangs it."""
    for _ in range(4):
        response = await client.post(
            "/v1/webhooks/stripe", content=body, headers=signed_headers(body)
        )
        if response.status_code != 503 or "Retry-After" not in response.headers:
            return response
        await asyncio.sleep(float(response.headers["Retry-After"]))
    return response


async def send_invoices(system: System, count: int) -> list[str]:
    """Deliver `count` signed invoice.finalized events; returns the invoice IDs."""
    invoices = [new_invoice() for _ in range(count)]
    gate = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=system.api_url, timeout=60) as client:

        async def send(invoice: dict[str, object]) -> None:
            body = json.dumps(stripe_event(invoice=invoice)).encode()
            async with gate:
                response = await deliver_webhook(client, body)
            assert response.status_code == 202, response.text

        await asyncio.gather(*(send(invoice) for invoice in invoices))
    return [str(invoice["id"]) for invoice in invoices]


async def count_posted(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(BusinessTransaction)
                .where(BusinessTransaction.state == TxState.POSTED)
            )
            or 0
        )


async def wait_posted(
    sessionmaker: async_sessionmaker[AsyncSession], at_least: int, *, timeout_s: float = 180
) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        posted = await count_posted(sessionmaker)
        if posted >= at_least or time.monotonic() > deadline:
            return posted
        await asyncio.sleep(0.1)


def assert_posted_exactly_once(system: System, invoice_ids: list[str]) -> None:
    ledger = system.ledger()
    by_external: dict[str, int] = {}
    for record in ledger:
        key = str(record["external_id"])
        by_external[key] = by_external.get(key, 0) + 1
    missing = sorted(set(invoice_ids) - set(by_external))
    doubled = sorted(k for k, n in by_external.items() if n > 1)
    assert (missing, doubled) == ([], []), f"{len(missing)} missing, {len(doubled)} doubled"
    assert len(ledger) == len(invoice_ids)
