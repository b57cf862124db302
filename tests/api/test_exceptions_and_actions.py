"""The exception queue, assignment, single replay checks and manual resolution."""

import json

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.enums import Role, TxState
from lineage.models import BusinessTransaction, WorkflowRun
from orchestrator.settings import OrchestratorSettings
from tests.api.builders import STEP, add_run, add_transaction, canonical
from tests.api.helpers import audit_rows, auth, ok
from tests.factories import new_invoice, signed_headers, stripe_event
from tests.workers import run_burst


async def _failed(
    sessionmaker: async_sessionmaker[AsyncSession], **fields: object
) -> BusinessTransaction:
    async with sessionmaker.begin() as session:
        tx = await add_transaction(session, state=TxState.EXCEPTION, **fields)  # type: ignore[arg-type]
        await add_run(session, tx, succeeded=False)
    return tx


async def test_queue_filters_sorts_and_assigns(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    first = await _failed(sessionmaker)
    second = await _failed(sessionmaker, workflow="renewal")
    viewer, ops = auth(api_keys[Role.VIEWER]), auth(api_keys[Role.OPS])

    oldest = ok(await client.get("/v1/exceptions", headers=viewer))
    newest = ok(await client.get("/v1/exceptions", params={"sort": "newest"}, headers=viewer))
    assert isinstance(oldest, dict)
    assert isinstance(newest, dict)
    exc_id = oldest["items"][0]["id"]
    assigned = ok(
        await client.post(f"/v1/exceptions/{exc_id}/assign", json={"owner": "alice"}, headers=ops)
    )
    mine = ok(await client.get("/v1/exceptions", params={"owner": "alice"}, headers=viewer))
    unowned = ok(await client.get("/v1/exceptions", params={"unassigned": "true"}, headers=viewer))
    renewal = ok(await client.get("/v1/exceptions", params={"workflow": "renewal"}, headers=viewer))
    other = ok(
        await client.get("/v1/exceptions", params={"classification": "validation"}, headers=viewer)
    )
    page1 = ok(await client.get("/v1/exceptions", params={"limit": 1}, headers=viewer))
    assert isinstance(page1, dict)
    page2 = ok(
        await client.get(
            "/v1/exceptions", params={"limit": 1, "cursor": page1["next_cursor"]}, headers=viewer
        )
    )
    assert isinstance(page2, dict)
    assert [i["correlation_id"] for i in page1["items"] + page2["items"]] == [
        first.correlation_id,
        second.correlation_id,
    ]
    assert page2["next_cursor"] is None

    assert [i["correlation_id"] for i in oldest["items"]] == [
        first.correlation_id,
        second.correlation_id,
    ]
    assert [i["correlation_id"] for i in newest["items"]] == [
        second.correlation_id,
        first.correlation_id,
    ]
    item = oldest["items"][0]
    assert item["classification"] == "retry_budget_exhausted"
    assert item["suggested_action"] == "check the target system's health, then replay"
    assert item["age_s"] >= 0
    assert item["owner"] is None
    assert isinstance(assigned, dict)
    assert assigned["owner"] == "alice"
    assert isinstance(mine, dict)
    assert [i["id"] for i in mine["items"]] == [exc_id]
    assert isinstance(unowned, dict)
    assert [i["correlation_id"] for i in unowned["items"]] == [second.correlation_id]
    assert isinstance(renewal, dict)
    assert [i["correlation_id"] for i in renewal["items"]] == [second.correlation_id]
    assert other == {"items": [], "next_cursor": None}
    [row] = [r for r in await audit_rows(sessionmaker) if r.action == "exception.assign"]
    assert (row.actor, row.role, row.before_state, row.after_state) == (
        "test-ops",
        "ops",
        {"owner": None},
        {"owner": "alice"},
    )


async def test_replay_with_an_edited_payload_stores_it_and_returns_the_diff(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    tx = await _failed(sessionmaker, invoice_id="in_edit")
    edited = canonical("in_edit", amount_minor=1250) | {"lines": [{"amount_minor": 1250}]}

    body = ok(
        await client.post(
            f"/v1/transactions/{tx.correlation_id}/replay",
            json={"reason": "amount corrected in billing", "payload": edited, "from_step": STEP},
            headers=auth(api_keys[Role.OPS]),
        ),
        202,
    )

    assert isinstance(body, dict)
    assert body["run_number"] == 2
    assert body["state"] == "pending"
    assert body["target_holds_record"] is False
    assert body["payload_edited"] is True
    assert body["payload_diff"] == [
        {"op": "replace", "path": "/amount_minor", "old": 1000, "new": 1250},
        # The edit is validated into the canonical model, so defaults are filled in.
        {
            "op": "replace",
            "path": "/lines",
            "old": [],
            "new": [
                {
                    "description": None,
                    "amount_minor": 1250,
                    "quantity": None,
                    "price_id": None,
                    "product_id": None,
                }
            ],
        },
    ]
    async with sessionmaker() as session:
        run = await session.scalar(select(WorkflowRun).where(WorkflowRun.number == 2))
        original = await session.get(BusinessTransaction, tx.correlation_id)
    assert run is not None
    assert original is not None
    assert run.input_override is not None
    assert run.input_override["amount_minor"] == 1250
    assert (run.reason, run.from_step, run.requested_by) == (
        "amount corrected in billing",
        STEP,
        "test-ops",
    )
    assert original.canonical is not None
    assert original.canonical["amount_minor"] == 1000


REFUSALS: list[tuple[dict[str, object], int, str]] = [
    ({"reason": "  "}, 422, "invalid_request"),
    ({}, 422, "invalid_request"),
    ({"reason": "r", "payload": {"invoice_id": "in_x"}}, 422, "invalid_payload"),
    ({"reason": "r", "payload": canonical("in_other")}, 422, "identity_change"),
    ({"reason": "r", "from_step": "crm.nothing"}, 422, "unknown_step"),
    ({"reason": "r", "force_new_posting": True}, 403, "forbidden"),
]


async def test_replay_refusals_change_nothing_and_are_audited(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    tx = await _failed(sessionmaker, invoice_id="in_refuse")

    for body, status, code in REFUSALS:
        response = await client.post(
            f"/v1/transactions/{tx.correlation_id}/replay",
            json=body,
            headers=auth(api_keys[Role.OPS]),
        )

        assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    async with sessionmaker() as session:
        after = await session.get(BusinessTransaction, tx.correlation_id)
    assert after is not None
    assert (after.state, after.run_count) == (TxState.EXCEPTION, 1)
    rows = [(r.actor, r.action, r.outcome, r.detail) for r in await audit_rows(sessionmaker)]
    assert rows == [
        ("test-ops", "transaction.replay", "rejected", {"status": status, "code": code})
        for _, status, code in REFUSALS
    ]


async def test_forced_re_posting_by_an_admin_creates_a_second_copy_once(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sandbox_url: str,
    worker_settings: OrchestratorSettings,
) -> None:
    body = json.dumps(stripe_event(invoice=new_invoice())).encode()
    posted = await client.post("/v1/webhooks/stripe", content=body, headers=signed_headers(body))
    correlation_id, invoice_id = (
        posted.json()["correlation_id"],
        json.loads(body)["data"]["object"]["id"],
    )
    await run_burst(worker_settings)

    by_ops = await client.post(
        f"/v1/transactions/{correlation_id}/replay",
        json={"reason": "need a second copy", "force_new_posting": True},
        headers=auth(api_keys[Role.OPS]),
    )
    by_admin = await client.post(
        f"/v1/transactions/{correlation_id}/replay",
        json={
            "reason": "the ERP's copy was voided by hand; post it again",
            "force_new_posting": True,
        },
        headers=auth(api_keys[Role.ADMIN]),
    )
    await run_burst(worker_settings)
    await run_burst(worker_settings)

    assert by_ops.status_code == 403
    assert by_admin.status_code == 202, by_admin.text
    ledger = httpx.get(f"{sandbox_url}/erp/_admin/ledger").json()["records"]
    assert sorted((r["external_id"], r["create_calls"]) for r in ledger) == [
        (invoice_id, 1),
        (f"{invoice_id}~r2", 1),
    ]


async def test_busy_and_ignored_transactions_cannot_be_replayed(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker.begin() as session:
        running = await add_transaction(session, state=TxState.RUNNING)
        ignored = await add_transaction(session, state=TxState.IGNORED, workflow=None)
    ops = auth(api_keys[Role.OPS])

    busy = await client.post(
        f"/v1/transactions/{running.correlation_id}/replay", json={"reason": "r"}, headers=ops
    )
    never = await client.post(
        f"/v1/transactions/{ignored.correlation_id}/replay", json={"reason": "r"}, headers=ops
    )
    missing = await client.post("/v1/transactions/nope/replay", json={"reason": "r"}, headers=ops)

    assert (busy.status_code, busy.json()["error"]["code"]) == (409, "transaction_busy")
    assert busy.json()["error"]["details"] == {"state": "running"}
    assert (never.status_code, never.json()["error"]["code"]) == (409, "not_replayable")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")


async def test_resolve_closes_the_transaction_and_its_exceptions(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    tx = await _failed(sessionmaker)
    ops = auth(api_keys[Role.OPS])

    body = ok(
        await client.post(
            f"/v1/transactions/{tx.correlation_id}/resolve",
            json={"resolution": "posted_by_hand", "note": "entered in the ERP by finance"},
            headers=ops,
        )
    )
    detail = ok(await client.get(f"/v1/transactions/{tx.correlation_id}", headers=ops))
    queue = ok(await client.get("/v1/exceptions", headers=ops))
    resolved = ok(await client.get("/v1/exceptions", params={"status": "resolved"}, headers=ops))
    again = await client.post(
        f"/v1/transactions/{tx.correlation_id}/resolve",
        json={"resolution": "x", "note": "y"},
        headers=ops,
    )

    assert isinstance(body, dict)
    assert (body["state"], body["resolved_by"], len(body["closed_exceptions"])) == (
        "manually_resolved",
        "test-ops",
        1,
    )
    assert queue == {"items": [], "next_cursor": None}
    assert isinstance(detail, dict)
    [closed] = detail["exceptions"]
    assert (closed["status"], closed["resolved_by"], closed["resolution_note"]) == (
        "resolved",
        "test-ops",
        "posted_by_hand: entered in the ERP by finance",
    )
    assert closed["resolved_at"] is not None
    assert isinstance(resolved, dict)
    [item] = resolved["items"]
    assert (item["resolved_by"], item["transaction_state"]) == ("test-ops", "manually_resolved")
    # A manually resolved transaction is settled: it may be resolved again only by replaying it.
    assert again.status_code == 200
    rows = [
        (r.action, r.outcome, r.before_state, r.after_state) for r in await audit_rows(sessionmaker)
    ]
    assert rows[0] == (
        "transaction.resolve",
        "succeeded",
        {"state": "exception"},
        {"state": "manually_resolved", "resolution": "posted_by_hand"},
    )
