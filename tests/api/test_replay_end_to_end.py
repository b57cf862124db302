"""Replay and bulk replay end to end: a dead ERP, exceptions, replays, each invoice posted once."""

import asyncio
import json
import socket
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.enums import Role
from orchestrator.settings import OrchestratorSettings
from tests.api.helpers import audit_rows, auth, ok
from tests.factories import new_invoice, signed_headers, stripe_event
from tests.workers import run_burst


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _post_invoice(client: httpx.AsyncClient) -> tuple[str, str]:
    invoice = new_invoice()
    body = json.dumps(stripe_event(invoice=invoice)).encode()
    response = await client.post("/v1/webhooks/stripe", content=body, headers=signed_headers(body))
    assert response.status_code == 202, response.text
    return response.json()["correlation_id"], invoice["id"]


async def _wait_finished(client: httpx.AsyncClient, bulk_id: int, headers: dict[str, str]) -> Any:
    for _ in range(200):
        job = ok(await client.get(f"/v1/replays/{bulk_id}", headers=headers))
        assert isinstance(job, dict)
        if job["state"] in ("completed", "cancelled"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"bulk replay {bulk_id} did not finish: {job}")


async def _burst_until(
    settings: OrchestratorSettings,
    client: httpx.AsyncClient,
    headers: dict[str, str],
    ids: list[str],
    state: str,
) -> None:
    """Run burst workers until every transaction is in `state`.

    One burst can end while a retry is still due later (the engine may leave it to the
    sweeper); the next burst's start-up sweep picks it up.
    """
    states: list[str] = []
    for _ in range(10):
        await run_burst(settings)
        states = []
        for cid in ids:
            detail = ok(await client.get(f"/v1/transactions/{cid}", headers=headers))
            assert isinstance(detail, dict)
            states.append(detail["state"])
        if set(states) == {state}:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"expected all {state}, got {states}")


def _ledger(sandbox_url: str) -> list[dict[str, Any]]:
    records = httpx.get(f"{sandbox_url}/erp/_admin/ledger").json()["records"]
    assert isinstance(records, list)
    return records


async def test_replays_after_an_erp_outage_post_each_invoice_once(
    client: httpx.AsyncClient,
    sandbox_url: str,
    worker_settings: OrchestratorSettings,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ops = auth(api_keys[Role.OPS])
    posted = [await _post_invoice(client) for _ in range(3)]
    (first, first_invoice), (second, _), (third, _) = posted
    outage = worker_settings.model_copy(
        update={"erp_url": f"http://127.0.0.1:{_closed_port()}/erp", "max_attempts": 2}
    )

    await _burst_until(outage, client, ops, [c for c, _ in posted], "exception")

    queue = ok(await client.get("/v1/exceptions", headers=ops))
    assert isinstance(queue, dict)
    assert sorted(i["correlation_id"] for i in queue["items"]) == sorted(c for c, _ in posted)
    assert {i["classification"] for i in queue["items"]} == {"retry_budget_exhausted"}

    single = ok(
        await client.post(
            f"/v1/transactions/{first}/replay", json={"reason": "ERP is back"}, headers=ops
        ),
        202,
    )
    assert isinstance(single, dict)
    assert (single["run_number"], single["target_holds_record"]) == (2, False)

    flt = {"state": ["exception"]}
    preview = ok(
        await client.post("/v1/replays", json={"filter": flt, "dry_run": True}, headers=ops)
    )
    assert isinstance(preview, dict)
    assert (preview["count"], preview["already_held"]) == (2, 0)
    assert [t["correlation_id"] for t in preview["sample"]] == [second, third]
    stale = await client.post(
        "/v1/replays", json={"filter": flt, "expected_count": 3, "reason": "outage"}, headers=ops
    )
    assert (stale.status_code, stale.json()["error"]["code"]) == (409, "count_mismatch")
    created = ok(
        await client.post(
            "/v1/replays",
            json={
                "filter": flt,
                "expected_count": 2,
                "reason": "ERP outage over",
                "name": "erp-outage",
            },
            headers=ops,
        ),
        202,
    )
    assert isinstance(created, dict)
    job = await _wait_finished(client, created["id"], ops)
    assert (job["name"], job["done"], job["progress"]) == ("erp-outage", 2, {"replayed": 2})
    assert [(i["correlation_id"], i["outcome"], i["run_number"]) for i in job["items"]] == [
        (second, "replayed", 2),
        (third, "replayed", 2),
    ]

    await _burst_until(worker_settings, client, ops, [c for c, _ in posted], "posted")

    ledger = _ledger(sandbox_url)
    assert sorted(r["external_id"] for r in ledger) == sorted(i for _, i in posted)
    assert {r["create_calls"] for r in ledger} == {1}
    for correlation_id, _ in posted:
        detail = ok(await client.get(f"/v1/transactions/{correlation_id}", headers=ops))
        assert isinstance(detail, dict)
        assert detail["state"] == "posted"
        [exc] = detail["exceptions"]
        # Closed by the replay run that posted it, and linked to that run.
        assert (exc["status"], exc["resolved_by"]) == ("resolved", "run 2")
        assert exc["resolved_by_run_id"] is not None
    assert ok(await client.get("/v1/exceptions", headers=ops)) == {"items": [], "next_cursor": None}
    [first_record] = [r for r in ledger if r["external_id"] == first_invoice]
    found = ok(await client.get("/v1/search", params={"q": first_record["id"]}, headers=ops))
    assert isinstance(found, dict)
    assert [h["transaction"]["correlation_id"] for h in found["items"]] == [first]

    # Replaying a posted transaction: the answer says the ERP already holds it; nothing new posts.
    again = ok(
        await client.post(
            f"/v1/transactions/{first}/replay", json={"reason": "verify"}, headers=ops
        ),
        202,
    )
    assert isinstance(again, dict)
    assert again["target_holds_record"] is True
    assert {(r["system"], r["external_id"]) for r in again["target_records"]} == {
        ("erp", first_record["id"])
    }
    held = ok(
        await client.post(
            "/v1/replays", json={"filter": {"state": ["posted"]}, "dry_run": True}, headers=ops
        )
    )
    assert isinstance(held, dict)
    assert (held["count"], held["already_held"]) == (2, 2)
    await _burst_until(worker_settings, client, ops, [first], "posted")
    after = _ledger(sandbox_url)
    assert [(r["id"], r["external_id"]) for r in after] == [
        (r["id"], r["external_id"]) for r in ledger
    ]

    rows = [
        (r.actor, r.action, r.outcome, r.target, (r.detail or {}).get("bulk_replay_id"))
        for r in await audit_rows(sessionmaker)
    ]
    bulk_id = created["id"]
    assert rows == [
        ("test-ops", "transaction.replay", "succeeded", first, None),
        ("test-ops", "bulk_replay.create", "rejected", "/v1/replays", None),
        ("test-ops", "bulk_replay.create", "succeeded", f"bulk_replay:{bulk_id}", None),
        ("test-ops", "transaction.replay", "succeeded", second, bulk_id),
        ("test-ops", "transaction.replay", "succeeded", third, bulk_id),
        ("test-ops", "transaction.replay", "succeeded", first, None),
    ]
