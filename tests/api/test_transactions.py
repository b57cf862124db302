"""GET /v1/transactions and /v1/transactions/{id}: roles, filters and cursor pagination."""

import json

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.enums import Role, TxState
from lineage.models import AuditLog
from tests.api.builders import add_run, add_transaction, canonical
from tests.factories import new_invoice, signed_headers, stripe_event

READERS = (Role.VIEWER, Role.EXECUTIVE, Role.FINANCE, Role.OPS, Role.ADMIN)


async def _ingest(
    client: httpx.AsyncClient, event_type: str = "invoice.finalized", **invoice: object
) -> str:
    body = json.dumps(stripe_event(event_type, invoice=new_invoice(**invoice))).encode()
    response = await client.post("/v1/webhooks/stripe", content=body, headers=signed_headers(body))
    assert response.status_code == 202, response.text
    return str(response.json()["correlation_id"])


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_reading_needs_a_key(client: httpx.AsyncClient) -> None:
    anonymous = await client.get("/v1/transactions")
    wrong = await client.get("/v1/transactions", headers=_auth("ck_nope_nope"))

    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthenticated"
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    ("role", "status"),
    [
        (Role.VIEWER, 200),
        (Role.EXECUTIVE, 200),
        (Role.FINANCE, 200),
        (Role.OPS, 200),
        (Role.ADMIN, 200),
        (Role.INGEST, 403),
    ],
)
async def test_read_roles(
    client: httpx.AsyncClient, api_keys: dict[Role, str], role: Role, status: int
) -> None:
    response = await client.get("/v1/transactions", headers=_auth(api_keys[role]))

    assert response.status_code == status
    if status == 403:
        assert response.json()["error"]["code"] == "forbidden"


async def test_denials_are_audited(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await client.get("/v1/transactions")
    await client.get("/v1/transactions", headers=_auth(api_keys[Role.INGEST]))
    await client.get("/v1/transactions", headers=_auth(api_keys[Role.VIEWER]))

    async with sessionmaker() as session:
        rows = list(await session.scalars(select(AuditLog).order_by(AuditLog.id)))
    assert [(r.actor, r.role, r.outcome, r.action) for r in rows] == [
        ("anonymous", None, "denied", "GET /v1/transactions"),
        ("test-ingest", "ingest", "denied", "GET /v1/transactions"),
    ]


async def test_filters_by_state_workflow_and_business_key(
    client: httpx.AsyncClient, api_keys: dict[Role, str]
) -> None:
    posted_like = await _ingest(client, customer="cus_filter_a")
    ignored = await _ingest(client, "invoice.created", customer="cus_filter_b")
    viewer = _auth(api_keys[Role.VIEWER])

    async def ids(**params: str) -> list[str]:
        response = await client.get("/v1/transactions", params=params, headers=viewer)
        assert response.status_code == 200, response.text
        return [item["correlation_id"] for item in response.json()["items"]]

    assert await ids(state="ignored") == [ignored]
    assert await ids(state="received") == [posted_like]
    assert await ids(workflow="invoice_generated") == [posted_like]
    assert await ids(business_key="cus_filter_b") == [ignored]
    assert await ids(source="billing") == [ignored, posted_like]
    assert await ids(source="crm") == []
    assert await ids(since="2999-01-01T00:00:00Z") == []
    assert await ids(until="2999-01-01T00:00:00Z") == [ignored, posted_like]


async def test_cursor_pagination_visits_every_row_once(
    client: httpx.AsyncClient, api_keys: dict[Role, str]
) -> None:
    created = [await _ingest(client) for _ in range(7)]
    viewer = _auth(api_keys[Role.VIEWER])

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/transactions", params=params, headers=viewer)).json()
        seen += [item["correlation_id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert pages == 3
    assert seen == list(reversed(created))


async def test_bad_inputs_get_reasons(client: httpx.AsyncClient, api_keys: dict[Role, str]) -> None:
    viewer = _auth(api_keys[Role.VIEWER])

    bad_cursor = await client.get("/v1/transactions", params={"cursor": "!!"}, headers=viewer)
    bad_state = await client.get("/v1/transactions", params={"state": "lost"}, headers=viewer)
    missing = await client.get(
        "/v1/transactions/01000000-0000-7000-8000-000000000000", headers=viewer
    )

    assert (bad_cursor.status_code, bad_cursor.json()["error"]["code"]) == (400, "invalid_cursor")
    assert (bad_state.status_code, bad_state.json()["error"]["code"]) == (422, "invalid_request")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")


async def test_detail_of_a_received_transaction(
    client: httpx.AsyncClient, api_keys: dict[Role, str]
) -> None:
    correlation_id = await _ingest(client, customer="cus_detail")

    response = await client.get(
        f"/v1/transactions/{correlation_id}", headers=_auth(api_keys[Role.VIEWER])
    )

    detail = response.json()
    assert detail["state"] == "received"
    assert detail["runs"] == []
    assert detail["event"]["deliveries"] == 1
    assert detail["event"]["event_type"] == "invoice.finalized"
    assert {("billing", "customer", "cus_detail")} <= {
        (r["system"], r["object_type"], r["external_id"]) for r in detail["external_refs"]
    }
    # Raw payloads are for admins (DESIGN.md); the detail never carries them.
    assert "payload" not in detail["event"]


@pytest.mark.parametrize("role", list(Role))
async def test_me_names_the_key_and_its_role(
    client: httpx.AsyncClient, api_keys: dict[Role, str], role: Role
) -> None:
    response = await client.get("/v1/me", headers=_auth(api_keys[role]))

    assert response.json() == {"name": f"test-{role}", "role": role.value}


async def _detail(client: httpx.AsyncClient, correlation_id: str, key: str) -> dict[str, object]:
    response = await client.get(f"/v1/transactions/{correlation_id}", headers=_auth(key))
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, dict)
    return body


async def test_canonical_input_is_for_ops_and_admin_and_the_raw_payload_for_admin(
    client: httpx.AsyncClient, api_keys: dict[Role, str]
) -> None:
    correlation_id = await _ingest(client, customer="cus_canonical")

    details = {role: await _detail(client, correlation_id, api_keys[role]) for role in READERS}

    for role in (Role.VIEWER, Role.EXECUTIVE, Role.FINANCE):
        assert details[role]["canonical"] is None, role
    for role in (Role.VIEWER, Role.EXECUTIVE, Role.FINANCE, Role.OPS):
        event = details[role]["event"]
        assert isinstance(event, dict)
        assert "payload" not in event, role
    for role in (Role.OPS, Role.ADMIN):
        canonical = details[role]["canonical"]
        assert isinstance(canonical, dict)
        assert canonical["input"]["customer_id"] == "cus_canonical"
        assert canonical["input"]["invoice_id"] == details[role]["invoice_id"]
        # The whole workflow input, invoice lines included, not only the business keys.
        assert isinstance(canonical["input"]["lines"], list)
        assert canonical["input"]["lines"]
        assert (canonical["latest_run"], canonical["latest_run_override"]) == (None, None)
        assert canonical["effective"] == canonical["input"]
    admin_event = details[Role.ADMIN]["event"]
    assert isinstance(admin_event, dict)
    assert admin_event["payload"]["type"] == "invoice.finalized"
    assert admin_event["payload"]["data"]["object"]["id"] == details[Role.ADMIN]["invoice_id"]


async def test_canonical_carries_the_latest_runs_edited_input(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker.begin() as session:
        tx = await add_transaction(session, state=TxState.EXCEPTION, invoice_id="in_canon_edit")
        await add_run(session, tx, succeeded=False)
    original = canonical("in_canon_edit")
    edited = original | {"amount_minor": 1250, "lines": [{"amount_minor": 1250}]}
    replay = await client.post(
        f"/v1/transactions/{tx.correlation_id}/replay",
        json={"reason": "amount corrected", "payload": edited},
        headers=_auth(api_keys[Role.OPS]),
    )
    assert replay.status_code == 202, replay.text

    ops = await _detail(client, tx.correlation_id, api_keys[Role.OPS])
    viewer = await _detail(client, tx.correlation_id, api_keys[Role.VIEWER])

    stored = ops["canonical"]
    assert isinstance(stored, dict)
    assert stored["input"] == original
    assert stored["latest_run"] == 2
    assert stored["latest_run_override"]["amount_minor"] == 1250
    assert stored["latest_run_override"]["lines"] == [
        {
            "description": None,
            "amount_minor": 1250,
            "quantity": None,
            "price_id": None,
            "product_id": None,
        }
    ]
    assert stored["effective"] == stored["latest_run_override"]
    assert viewer["canonical"] is None


async def test_detail_explains_each_kind_of_wait(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    from datetime import UTC, datetime

    from lineage.enums import TxState
    from lineage.models import BusinessTransaction

    due = datetime(2031, 1, 1, tzinfo=UTC)
    cases = {
        "queued": (TxState.RECEIVED, None, None),
        "ordering": (
            TxState.PENDING,
            "waiting for 01ab (invoice.finalized, running) on invoice:x",
            None,
        ),
        "retry_backoff": (TxState.RETRYING, "erp.post_invoice retries at 2031 (server)", due),
        "rate_limit": (TxState.RETRYING, "erp.post_invoice waits for the erp rate limit", due),
    }
    answers = {}
    for kind, (state, reason, next_at) in cases.items():
        correlation_id = await _ingest(client)
        async with sessionmaker.begin() as session:
            tx = await session.get(BusinessTransaction, correlation_id)
            assert tx is not None
            tx.state, tx.state_reason, tx.next_attempt_at = state, reason, next_at
        detail = (
            await client.get(
                f"/v1/transactions/{correlation_id}", headers=_auth(api_keys[Role.VIEWER])
            )
        ).json()
        answers[kind] = detail["waiting"]

    assert {kind: answer["kind"] for kind, answer in answers.items()} == {k: k for k in cases}
    assert answers["ordering"]["reason"].startswith("waiting for 01ab")
    assert answers["retry_backoff"]["next_attempt_at"] == "2031-01-01T00:00:00Z"
    assert answers["queued"]["next_attempt_at"] is None
