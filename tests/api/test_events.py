"""POST /v1/events: CloudEvents 1.0 structured JSON with an ingest key."""

import json
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.enums import Role
from lineage.models import BusinessTransaction
from tests.dbutil import inbox_counts

CE_JSON = "application/cloudevents+json"


def cloudevent(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": "inv-gen-0001",
        "source": "/billing/acme",
        "type": "com.concord.invoice.generated",
        "time": "2026-11-01T00:00:00Z",
        "datacontenttype": "application/json",
        "data": {
            "invoice_id": "INV-0001",
            "customer_id": "CUST-9",
            "subscription_id": "SUB-3",
            "amount_minor": 129900,
            "currency": "EUR",
            "period_start": "2026-11-01T00:00:00Z",
        },
    }
    event.update(overrides)
    return event


def _headers(key: str, content_type: str = CE_JSON) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": content_type}


async def test_canonical_event_is_stored_and_routed(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    response = await client.post(
        "/v1/events", content=json.dumps(cloudevent()), headers=_headers(api_keys[Role.INGEST])
    )

    assert response.status_code == 202, response.text
    async with sessionmaker() as session:
        tx = await session.get(BusinessTransaction, response.json()["correlation_id"])
    assert tx is not None
    assert (tx.workflow, tx.invoice_id, tx.amount_minor, tx.currency, tx.period) == (
        "invoice_generated",
        "INV-0001",
        129900,
        "EUR",
        "2026-11",
    )


async def test_duplicates_are_keyed_on_source_and_id(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    headers = _headers(api_keys[Role.INGEST])
    first = await client.post("/v1/events", content=json.dumps(cloudevent()), headers=headers)
    again = await client.post("/v1/events", content=json.dumps(cloudevent()), headers=headers)
    other_source = await client.post(
        "/v1/events", content=json.dumps(cloudevent(source="/billing/other")), headers=headers
    )
    changed = await client.post(
        "/v1/events", content=json.dumps(cloudevent(subject="changed")), headers=headers
    )

    assert (first.status_code, again.status_code, other_source.status_code) == (202, 200, 202)
    assert again.json() == {**first.json(), "duplicate": True}
    assert changed.status_code == 409
    assert await inbox_counts(sessionmaker) == (2, 2)


async def test_only_ingest_and_admin_may_post(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    body = json.dumps(cloudevent())
    anonymous = await client.post("/v1/events", content=body, headers={"Content-Type": CE_JSON})
    viewer = await client.post("/v1/events", content=body, headers=_headers(api_keys[Role.VIEWER]))
    ops = await client.post("/v1/events", content=body, headers=_headers(api_keys[Role.OPS]))
    admin = await client.post("/v1/events", content=body, headers=_headers(api_keys[Role.ADMIN]))

    assert (anonymous.status_code, viewer.status_code, ops.status_code) == (401, 403, 403)
    assert admin.status_code == 202
    assert await inbox_counts(sessionmaker) == (1, 1)


async def test_refusals_store_nothing(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    key = api_keys[Role.INGEST]
    no_source = cloudevent()
    del no_source["source"]
    cases = [
        (b"{nope", _headers(key), 400, "invalid_json"),
        (json.dumps(no_source).encode(), _headers(key), 400, "not_an_event"),
        (json.dumps(cloudevent(specversion="0.3")).encode(), _headers(key), 400, "not_an_event"),
        (
            json.dumps(cloudevent(data={"invoice_id": "x"})).encode(),
            _headers(key),
            400,
            "not_an_event",
        ),
        (
            json.dumps(cloudevent()).encode(),
            _headers(key, "text/xml"),
            415,
            "unsupported_media_type",
        ),
        (
            json.dumps(cloudevent(data={"pad": "x" * 300_000})).encode(),
            _headers(key),
            413,
            "payload_too_large",
        ),
    ]
    for body, headers, status, code in cases:
        response = await client.post("/v1/events", content=body, headers=headers)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert await inbox_counts(sessionmaker) == (0, 0)


async def test_unknown_types_are_recorded_as_ignored(
    client: httpx.AsyncClient, api_keys: dict[Role, str]
) -> None:
    response = await client.post(
        "/v1/events",
        content=json.dumps(cloudevent(type="com.example.other", id="x-1")),
        headers=_headers(api_keys[Role.INGEST]),
    )

    assert response.status_code == 202
    assert response.json()["status"] == "ignored"


async def test_a_renewal_risk_signal_starts_the_renewal_risk_workflow(
    client: httpx.AsyncClient,
    api_keys: dict[Role, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    headers = _headers(api_keys[Role.INGEST])
    data = {"subscription_id": "sub_9", "risk": "high", "occurred_at": "2026-11-01T00:00:00Z"}
    signal = cloudevent(id="risk-1", type="com.concord.renewal_risk.identified", data=data)

    accepted = await client.post("/v1/events", content=json.dumps(signal), headers=headers)
    refused = await client.post(
        "/v1/events",
        content=json.dumps({**signal, "id": "risk-2", "data": {**data, "risk": ""}}),
        headers=headers,
    )

    assert accepted.status_code == 202, accepted.text
    async with sessionmaker() as session:
        tx = await session.get(BusinessTransaction, accepted.json()["correlation_id"])
    assert tx is not None
    assert (tx.workflow, tx.subscription_id, tx.ordering_key) == (
        "renewal_risk",
        "sub_9",
        "deal:sub_9",
    )
    assert tx.canonical is not None
    assert tx.canonical["property_value"] == "high"
    assert (refused.status_code, refused.json()["error"]["code"]) == (400, "not_an_event")
    assert "risk" in refused.json()["error"]["message"]
    assert await inbox_counts(sessionmaker) == (1, 1)
