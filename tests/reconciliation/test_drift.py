"""Drift injected into the sandbox ERP while Concord posts is found by the next run, and a fix
(in the ERP, or by a replay) is auto-resolved by the run after it: webhook -> worker -> ERP ->
reconciliation."""

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.enums import Role
from lineage.models import Mismatch
from orchestrator.settings import OrchestratorSettings
from reconciliation.http_source import HttpSource
from reconciliation.runner import RunOptions, load_run, run_reconciliation
from reconciliation.sources import LineageSource
from tests.factories import new_invoice, signed_headers, stripe_event
from tests.workers import run_burst

PERIOD = "2026-11"
PERIOD_START = int(datetime(2026, 11, 3, tzinfo=UTC).timestamp())


async def _post(client: httpx.AsyncClient) -> tuple[str, str]:
    invoice = new_invoice(period_start=PERIOD_START, total=4_200, currency="usd")
    body = json.dumps(stripe_event(invoice=invoice)).encode()
    response = await client.post("/v1/webhooks/stripe", content=body, headers=signed_headers(body))
    assert response.status_code == 202, response.text
    return response.json()["correlation_id"], invoice["id"]


def _faults(sandbox_url: str, spec: str) -> None:
    response = httpx.post(f"{sandbox_url}/erp/_admin/faults", json={"faults": spec})
    assert response.status_code == 200, response.text


async def _reconcile(
    sessionmaker: async_sessionmaker[AsyncSession], sandbox_url: str, tmp_path: Path
) -> int:
    async with httpx.AsyncClient() as http:
        return await run_reconciliation(
            sessionmaker,
            period=PERIOD,
            sources=[
                LineageSource(sessionmaker),
                HttpSource(billing_url=None, erp_url=f"{sandbox_url}/erp", client=http),
            ],
            options=RunOptions(runs_dir=tmp_path),
            trigger="test",
        )


async def test_a_dropped_posting_is_found_then_auto_resolved_once_the_erp_holds_it(
    client: httpx.AsyncClient,
    sandbox_url: str,
    worker_settings: OrchestratorSettings,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    _kept_cid, _kept = await _post(client)
    await run_burst(worker_settings)
    # The ERP answers success for the next invoice but keeps nothing.
    _faults(sandbox_url, "erp.invoice:drift_drop=1")
    dropped_cid, dropped = await _post(client)
    await run_burst(worker_settings)
    _faults(sandbox_url, "")

    first = await _reconcile(sessionmaker, sandbox_url, tmp_path)
    run = await load_run(sessionmaker, first)
    assert run.input_rows is not None
    assert (run.input_rows["lineage_postings"], run.input_rows["erp_invoices"]) == (2, 1)
    async with sessionmaker() as session:
        [mismatch] = await session.scalars(select(Mismatch))
    assert (mismatch.kind, mismatch.source_id, mismatch.status) == (
        "posted_but_missing",
        dropped,
        "open",
    )
    assert mismatch.correlation_ids == [dropped_cid]
    assert (mismatch.amount_at_risk_minor, mismatch.currency) == (4_200, "USD")

    # Someone books the invoice in the ERP by hand; the next run finds nothing left.
    fixed = httpx.put(
        f"{sandbox_url}/erp/record/v1/invoice/eid:{dropped}",
        json={
            "entity": {"externalId": "cus_1"},
            "currency": {"refName": "USD"},
            "tranDate": "2026-11-03",
            "item": {"items": [{"amount": 42.0}]},
        },
    )
    assert fixed.status_code == 204
    second = await _reconcile(sessionmaker, sandbox_url, tmp_path)
    assert (await load_run(sessionmaker, second)).auto_resolved_count == 1
    async with sessionmaker() as session:
        after = await session.get(Mismatch, mismatch.id)
        assert after is not None
        assert (after.status, after.resolved_run_id) == ("auto_resolved", second)


async def test_a_replay_repairs_a_dropped_posting_and_the_next_run_auto_resolves_it(
    client: httpx.AsyncClient,
    sandbox_url: str,
    worker_settings: OrchestratorSettings,
    sessionmaker: async_sessionmaker[AsyncSession],
    api_keys: dict[Role, str],
    tmp_path: Path,
) -> None:
    _faults(sandbox_url, "erp.invoice:drift_drop=1")
    dropped_cid, dropped = await _post(client)
    await run_burst(worker_settings)
    _faults(sandbox_url, "")
    first = await _reconcile(sessionmaker, sandbox_url, tmp_path)
    async with sessionmaker() as session:
        [mismatch] = await session.scalars(select(Mismatch))
    assert (mismatch.kind, mismatch.source_id, mismatch.status) == (
        "posted_but_missing",
        dropped,
        "open",
    )
    assert (await load_run(sessionmaker, first)).new_count == 1

    # The ERP still answers the original idempotency key with the lost record's location:
    # the replay must look the invoice up, find nothing, and post it under a key of its own.
    replay = await client.post(
        f"/v1/transactions/{dropped_cid}/replay",
        json={"reason": "reconciliation found it missing in the ERP"},
        headers={"Authorization": f"Bearer {api_keys[Role.OPS]}"},
    )
    assert replay.status_code == 202, replay.text
    await run_burst(worker_settings)

    ledger = httpx.get(f"{sandbox_url}/erp/_admin/ledger").json()["records"]
    assert [r["external_id"] for r in ledger if r["type"] == "invoice"] == [dropped]
    second = await _reconcile(sessionmaker, sandbox_url, tmp_path)
    assert (await load_run(sessionmaker, second)).auto_resolved_count == 1
    async with sessionmaker() as session:
        after = await session.get(Mismatch, mismatch.id)
        assert after is not None
        assert after.status == "auto_resolved"


async def test_a_replay_started_from_the_mismatch_repairs_it_and_the_next_run_auto_resolves(
    client: httpx.AsyncClient,
    sandbox_url: str,
    worker_settings: OrchestratorSettings,
    sessionmaker: async_sessionmaker[AsyncSession],
    api_keys: dict[Role, str],
    tmp_path: Path,
) -> None:
    _faults(sandbox_url, "erp.invoice:drift_drop=1")
    dropped_cid, dropped = await _post(client)
    await run_burst(worker_settings)
    _faults(sandbox_url, "")
    await _reconcile(sessionmaker, sandbox_url, tmp_path)
    ops = {"Authorization": f"Bearer {api_keys[Role.OPS]}"}
    [mismatch] = (await client.get("/v1/mismatches", headers=ops)).json()["items"]
    assert (mismatch["kind"], mismatch["correlation_ids"]) == ("posted_but_missing", [dropped_cid])

    replay = await client.post(
        f"/v1/mismatches/{mismatch['id']}/replay",
        json={"reason": "reconciliation found it missing in the ERP"},
        headers=ops,
    )
    assert replay.status_code == 202, replay.text
    await run_burst(worker_settings)

    ledger = httpx.get(f"{sandbox_url}/erp/_admin/ledger").json()["records"]
    assert [r["external_id"] for r in ledger if r["type"] == "invoice"] == [dropped]
    second = await _reconcile(sessionmaker, sandbox_url, tmp_path)
    assert (await load_run(sessionmaker, second)).auto_resolved_count == 1
    after = (await client.get(f"/v1/mismatches/{mismatch['id']}", headers=ops)).json()
    assert (after["status"], after["resolved_run_id"]) == ("auto_resolved", second)
    assert after["last_replay_runs"] == replay.json()["mismatch"]["last_replay_runs"]
