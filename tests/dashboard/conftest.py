"""A real API with real lineage behind it: one posted transaction and one ERP-fault exception.

The dashboard never touches the database, so one backend (SQLite) is enough here; the API's
own tests cover PostgreSQL.
"""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from lineage.enums import Role
from orchestrator.settings import OrchestratorSettings
from tests.factories import new_invoice, signed_headers, stripe_event
from tests.support.queued import wakeups_queued
from tests.workers import run_burst

# Nothing listens on port 9 (discard) here: every ERP call fails with a connection error.
DEAD_ERP = "http://127.0.0.1:9/erp"


@pytest.fixture
def database_url(tmp_path: Path, sqlite_template: Path) -> str:
    path = tmp_path / "concord.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@dataclass(frozen=True)
class Seeded:
    api_url: str
    keys: dict[Role, str]
    posted: str
    failed: str
    failed_invoice: str
    worker: OrchestratorSettings


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def post_invoice(client: httpx.AsyncClient) -> tuple[str, str]:
    invoice = new_invoice()
    body = json.dumps(stripe_event(invoice=invoice)).encode()
    response = await client.post("/v1/webhooks/stripe", content=body, headers=signed_headers(body))
    assert response.status_code == 202, response.text
    return str(response.json()["correlation_id"]), str(invoice["id"])


async def run_until_settled(
    client: httpx.AsyncClient, worker: OrchestratorSettings, cid: str, *, key: str
) -> str:
    """Burst workers until the transaction settles; its state."""
    # Else a late wake-up can be left in the queue, which the operations page would count.
    await wakeups_queued(worker.redis_url, [cid], api=client, key=key)
    state = ""
    for _ in range(5):
        await run_burst(worker)
        state = (await client.get(f"/v1/transactions/{cid}", headers=auth(key))).json()["state"]
        if state not in ("received", "pending", "running", "retrying"):
            break
    return str(state)


async def make_exception(
    client: httpx.AsyncClient, worker: OrchestratorSettings, *, key: str
) -> tuple[str, str]:
    """An invoice the ERP never received: one attempt against a dead ERP, then the queue."""
    cid, invoice = await post_invoice(client)
    dead = worker.model_copy(update={"erp_url": DEAD_ERP, "max_attempts": 1})
    assert await run_until_settled(client, dead, cid, key=key) == "exception"
    return cid, invoice


@pytest.fixture
async def seeded(
    api_url: str,
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    worker_settings: OrchestratorSettings,
) -> Seeded:
    viewer = api_keys[Role.VIEWER]
    posted, _ = await post_invoice(client)
    assert await run_until_settled(client, worker_settings, posted, key=viewer) == "posted"
    failed, invoice = await make_exception(client, worker_settings, key=viewer)
    return Seeded(api_url, api_keys, posted, failed, invoice, worker_settings)
