"""An acknowledged event is never lost: the sweeper wakes what intake could not enqueue."""

import json

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.main import create_app
from api.settings import ApiSettings
from lineage.enums import TxState
from lineage.models import BusinessTransaction
from orchestrator.settings import OrchestratorSettings
from tests.factories import WEBHOOK_SECRET, new_invoice, signed_headers, stripe_event
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
