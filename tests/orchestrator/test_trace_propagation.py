"""The caller's W3C trace context travels from intake through the job (and its retries) to the
systems Concord calls, so a trace started upstream covers the whole integration."""

import json
import secrets
import uuid

import httpx

from lineage.enums import Role
from orchestrator.settings import OrchestratorSettings
from tests.factories import new_invoice, signed_headers, stripe_event
from tests.workers import run_burst


async def _deliver(client: httpx.AsyncClient, **headers: str) -> tuple[str, str]:
    invoice = new_invoice()
    body = json.dumps(stripe_event(invoice=invoice)).encode()
    response = await client.post(
        "/v1/webhooks/stripe", content=body, headers={**signed_headers(body), **headers}
    )
    assert response.status_code == 202, response.text
    return response.json()["correlation_id"], str(invoice["id"])


def _erp_trace_ids(sandbox_url: str, invoice_id: str) -> list[str]:
    records = httpx.get(f"{sandbox_url}/erp/_admin/ledger").json()["records"]
    return [r["traceparent"].split("-")[1] for r in records if r["external_id"] == invoice_id]


async def test_a_callers_trace_reaches_the_erp_call(
    client: httpx.AsyncClient, sandbox_url: str, worker_settings: OrchestratorSettings
) -> None:
    trace_id = secrets.token_hex(16)
    _, invoice_id = await _deliver(client, traceparent=f"00-{trace_id}-{secrets.token_hex(8)}-01")

    await run_burst(worker_settings)

    assert _erp_trace_ids(sandbox_url, invoice_id) == [trace_id]


async def test_the_trace_survives_a_retry_that_waits_in_the_queue(
    client: httpx.AsyncClient,
    sandbox_url: str,
    worker_settings: OrchestratorSettings,
    api_keys: dict[Role, str],
) -> None:
    trace_id = secrets.token_hex(16)
    correlation_id, invoice_id = await _deliver(
        client, traceparent=f"00-{trace_id}-{secrets.token_hex(8)}-01"
    )
    # The first attempt meets an outage; the retry is a new job deferred in Redis.
    faults = httpx.post(f"{sandbox_url}/erp/_admin/faults", json={"faults": "erp:outage=3s"})
    assert faults.status_code == 200, faults.text

    await run_burst(worker_settings)

    viewer = {"Authorization": f"Bearer {api_keys[Role.VIEWER]}"}
    detail = (await client.get(f"/v1/transactions/{correlation_id}", headers=viewer)).json()
    attempts = [a for run in detail["runs"] for s in run["steps"] for a in s["attempts"]]
    assert detail["state"] == "posted"
    assert len(attempts) >= 2
    assert _erp_trace_ids(sandbox_url, invoice_id) == [trace_id]


async def test_without_a_valid_traceparent_the_trace_is_the_correlation_id(
    client: httpx.AsyncClient, sandbox_url: str, worker_settings: OrchestratorSettings
) -> None:
    # W3C: a malformed traceparent is ignored, not trusted or half-parsed.
    correlation_id, invoice_id = await _deliver(client, traceparent="00-xyz-not-a-trace-01")

    await run_burst(worker_settings)

    assert _erp_trace_ids(sandbox_url, invoice_id) == [uuid.UUID(correlation_id).hex]
