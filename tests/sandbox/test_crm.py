"""The HubSpot-shaped CRM sandbox: objects, upsert and lookup by external ID, search, webhooks."""

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from sandbox.app import create_sandbox_app
from sandbox.hubspot_signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, v3_signature
from tests.support.servers import serve_in_thread

SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
DEALS = "/crm/v3/objects/deals"


@pytest.fixture
def crm() -> Iterator[httpx.Client]:
    with (
        serve_in_thread(create_sandbox_app(faults="")) as url,
        httpx.Client(base_url=f"{url}/crm") as client,
    ):
        yield client


def test_v3_signature_matches_hubspots_published_vector() -> None:
    # ../shared/fixtures/hubspot/webhook_signature.md, from HubSpot's own SDK tests.
    signature = v3_signature(
        SECRET,
        method="POST",
        uri="https://www.example.com/webhook_uri",
        body=b"{'example_field':'example_value'}",
        timestamp_ms=1693657560000,
    )

    assert signature == "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y="


def test_create_get_by_id_and_by_external_id(crm: httpx.Client) -> None:
    created = crm.post(
        "/crm/v3/objects/companies",
        json={"properties": {"name": "Acme", "external_id": "acct-1", "employees": 50}},
    )

    assert created.status_code == 201
    body = created.json()
    assert body["properties"]["employees"] == "50"  # HubSpot property values are strings
    assert body["properties"]["hs_object_id"] == body["id"]
    by_id = crm.get(f"/crm/v3/objects/companies/{body['id']}").json()
    by_eid = crm.get(
        "/crm/v3/objects/companies/acct-1", params={"idProperty": "external_id"}
    ).json()
    assert by_id["id"] == by_eid["id"] == body["id"]
    duplicate = crm.post(
        "/crm/v3/objects/companies", json={"properties": {"external_id": "acct-1"}}
    )
    assert duplicate.status_code == 409
    assert duplicate.json()["category"] == "CONFLICT"
    missing = crm.get("/crm/v3/objects/companies/nope", params={"idProperty": "external_id"})
    assert (missing.status_code, missing.json()["category"]) == (404, "OBJECT_NOT_FOUND")


def test_batch_upsert_creates_then_updates(crm: httpx.Client) -> None:
    def upsert(amount: int) -> dict[str, Any]:
        inputs = [
            {
                "idProperty": "external_id",
                "id": "deal-1",
                "properties": {"dealname": "Acme renewal", "amount": amount},
            }
        ]
        response = crm.post(f"{DEALS}/batch/upsert", json={"inputs": inputs})
        assert response.status_code == 200
        result: dict[str, Any] = response.json()["results"][0]
        return result

    first, second = upsert(1000), upsert(1200)

    assert (first["new"], second["new"]) == (True, False)
    assert first["id"] == second["id"]
    assert second["properties"]["amount"] == "1200"
    [row] = crm.get("/_admin/ledger").json()["records"]
    assert (row["external_id"], row["create_calls"]) == ("deal-1", 2)


def test_search_by_property_with_paging(crm: httpx.Client) -> None:
    for n in range(5):
        stage = "closedwon" if n % 2 == 0 else "appointmentscheduled"
        crm.post(
            DEALS,
            json={
                "properties": {
                    "dealname": f"d{n}",
                    "dealstage": stage,
                    "renewal_date": f"2024-0{n + 1}-01",
                }
            },
        )

    query = {
        "filterGroups": [
            {"filters": [{"propertyName": "dealstage", "operator": "EQ", "value": "closedwon"}]}
        ],
        "limit": 2,
    }
    first = crm.post(f"{DEALS}/search", json=query).json()
    rest = crm.post(
        f"{DEALS}/search", json={**query, "after": first["paging"]["next"]["after"]}
    ).json()
    due = crm.post(
        f"{DEALS}/search",
        json={
            "filterGroups": [
                {
                    "filters": [
                        {"propertyName": "renewal_date", "operator": "LT", "value": "2024-03-01"}
                    ]
                }
            ]
        },
    ).json()

    assert first["total"] == 3
    assert [r["properties"]["dealname"] for r in first["results"] + rest["results"]] == [
        "d0",
        "d2",
        "d4",
    ]
    assert "paging" not in rest
    assert [r["properties"]["dealname"] for r in due["results"]] == ["d0", "d1"]


def test_unknown_object_type_and_bad_body(crm: httpx.Client) -> None:
    assert crm.post("/crm/v3/objects/widgets", json={"properties": {}}).status_code == 404
    bad = crm.post(DEALS, json={"props": {}})
    assert (bad.status_code, bad.json()["category"]) == (400, "VALIDATION_ERROR")


def hubspot_receiver(seen: list[dict[str, Any]], base: list[str]) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/webhooks/hubspot")
    async def hook(request: Request) -> Response:
        body = await request.body()
        stamp = int(request.headers[TIMESTAMP_HEADER])
        expected = v3_signature(
            SECRET,
            method="POST",
            uri=f"{base[0]}/v1/webhooks/hubspot",
            body=body,
            timestamp_ms=stamp,
        )
        seen.append(
            {"valid": expected == request.headers[SIGNATURE_HEADER], "events": json.loads(body)}
        )
        return Response(status_code=204)

    return app


def test_closed_won_and_renewal_risk_are_signed_webhooks() -> None:
    seen: list[dict[str, Any]] = []
    base: list[str] = []
    with serve_in_thread(hubspot_receiver(seen, base)) as hook_url:
        base.append(hook_url)
        app = create_sandbox_app(faults="", webhook_url=hook_url, hubspot_client_secret=SECRET)
        with serve_in_thread(app) as url, httpx.Client(base_url=f"{url}/crm") as crm:
            deal = crm.post(
                DEALS,
                json={
                    "properties": {
                        "dealname": "Acme",
                        "external_id": "deal-9",
                        "dealstage": "contractsent",
                    }
                },
            ).json()
            crm.patch(
                f"{DEALS}/deal-9",
                params={"idProperty": "external_id"},
                json={"properties": {"dealstage": "closedwon"}},
            )
            crm.patch(f"{DEALS}/{deal['id']}", json={"properties": {"renewal_risk": "high"}})
            crm.patch(f"{DEALS}/{deal['id']}", json={"properties": {"amount": "5000"}})
            status = crm.get("/_admin/webhooks", params={"wait_s": 20}).json()

    assert status["idle"] is True
    assert all(s["valid"] for s in seen)
    events = sorted((e for s in seen for e in s["events"]), key=lambda e: e["eventId"])
    assert [(e["subscriptionType"], e["propertyName"], e["propertyValue"]) for e in events] == [
        ("deal.propertyChange", "dealstage", "closedwon"),
        ("deal.propertyChange", "renewal_risk", "high"),
    ]
    assert {e["objectId"] for e in events} == {int(deal["id"])}
    assert events[0]["sourceId"] == "deal-9"
