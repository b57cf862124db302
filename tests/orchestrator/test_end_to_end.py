"""The thin slice: signed webhook -> inbox -> arq worker -> sandbox ERP -> lineage in the API."""

import json
import re

import httpx
import pytest
from prometheus_client import generate_latest

from lineage.enums import Role
from orchestrator.client.queue import enqueue_wakeup, queue_pool
from orchestrator.settings import OrchestratorSettings
from tests.factories import new_invoice, signed_headers, stripe_event
from tests.workers import run_burst


async def _post_invoice(
    client: httpx.AsyncClient, invoice_id: str | None = None
) -> tuple[str, str]:
    invoice = new_invoice() if invoice_id is None else {"id": invoice_id}
    body = json.dumps(stripe_event(invoice=invoice)).encode()
    response = await client.post("/v1/webhooks/stripe", content=body, headers=signed_headers(body))
    assert response.status_code == 202, response.text
    return response.json()["correlation_id"], invoice["id"]


async def test_finalized_invoice_is_posted_once_with_lineage(
    client: httpx.AsyncClient,
    sandbox_url: str,
    worker_settings: OrchestratorSettings,
    api_keys: dict[Role, str],
) -> None:
    correlation_id, invoice_id = await _post_invoice(client)

    await run_burst(worker_settings)

    viewer = {"Authorization": f"Bearer {api_keys[Role.VIEWER]}"}
    detail = (await client.get(f"/v1/transactions/{correlation_id}", headers=viewer)).json()
    assert detail["state"] == "posted"
    assert detail["completed_at"] is not None
    [run] = detail["runs"]
    assert run["state"] == "succeeded"
    [step] = run["steps"]
    assert step["name"] == "erp.post_invoice"
    assert step["state"] == "succeeded"
    assert step["idempotency_key"] == f"{correlation_id}:erp.post_invoice"
    assert step["external_id"] == invoice_id
    [attempt] = step["attempts"]
    assert attempt["outcome"] == "succeeded"
    assert attempt["http_status"] == 204
    ledger = httpx.get(f"{sandbox_url}/erp/_admin/ledger").json()["records"]
    [record] = [r for r in ledger if r["external_id"] == invoice_id]
    assert record["create_calls"] == 1
    assert record["idempotency_key"] == f"{correlation_id}:erp.post_invoice"
    exposition = generate_latest().decode()
    assert re.search(
        r'concord_step_duration_seconds_count\{outcome="succeeded",step="erp.post_invoice",'
        r'target="erp"\} [1-9]',
        exposition,
    )
    erp_refs = [r for r in detail["external_refs"] if r["system"] == "erp"]
    assert erp_refs == [
        {
            "system": "erp",
            "object_type": "invoice",
            "external_id": record["id"],
            "created_at": erp_refs[0]["created_at"],
        }
    ]


async def test_redelivery_and_a_stray_wakeup_post_nothing_more(
    client: httpx.AsyncClient, sandbox_url: str, worker_settings: OrchestratorSettings
) -> None:
    body = json.dumps(stripe_event(invoice=new_invoice())).encode()
    first = await client.post("/v1/webhooks/stripe", content=body, headers=signed_headers(body))
    correlation_id = first.json()["correlation_id"]
    await run_burst(worker_settings)

    # The inbox answers the redelivery as a duplicate; the claim refuses the finished transaction.
    again = await client.post("/v1/webhooks/stripe", content=body, headers=signed_headers(body))
    pool = queue_pool(worker_settings.redis_url)
    try:
        assert await enqueue_wakeup(pool, correlation_id, due="stray")
    finally:
        await pool.aclose()
    await run_burst(worker_settings)

    assert again.json() == {**first.json(), "duplicate": True}
    ledger = httpx.get(f"{sandbox_url}/erp/_admin/ledger").json()["records"]
    assert [r["create_calls"] for r in ledger] == [1]


async def test_a_second_event_for_a_posted_invoice_finds_it_instead_of_posting(
    client: httpx.AsyncClient,
    sandbox_url: str,
    worker_settings: OrchestratorSettings,
    api_keys: dict[Role, str],
) -> None:
    _first, invoice_id = await _post_invoice(client)
    await run_burst(worker_settings)
    second, _ = await _post_invoice(client, invoice_id)

    await run_burst(worker_settings)

    ledger = httpx.get(f"{sandbox_url}/erp/_admin/ledger").json()["records"]
    assert [r["external_id"] for r in ledger] == [invoice_id]
    detail = (
        await client.get(
            f"/v1/transactions/{second}",
            headers={"Authorization": f"Bearer {api_keys[Role.VIEWER]}"},
        )
    ).json()
    assert detail["state"] == "posted"
    [attempt] = detail["runs"][0]["steps"][0]["attempts"]
    assert attempt["outcome"] == "found_existing"
    assert attempt["target_ref"] == ledger[0]["id"]


@pytest.mark.parametrize("count", [5])
async def test_many_invoices_each_post_exactly_once(
    client: httpx.AsyncClient, sandbox_url: str, worker_settings: OrchestratorSettings, count: int
) -> None:
    invoice_ids = [(await _post_invoice(client))[1] for _ in range(count)]

    await run_burst(worker_settings)

    ledger = httpx.get(f"{sandbox_url}/erp/_admin/ledger").json()["records"]
    assert sorted(r["external_id"] for r in ledger) == sorted(invoice_ids)
    assert {r["create_calls"] for r in ledger} == {1}
