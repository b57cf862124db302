"""Quote-to-cash over HTTP: a signed HubSpot closed-won webhook to the API, a real arq worker,
the deal read from the sandbox CRM and the subscription created in the sandbox billing.
"""

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from api.main import create_app
from api.settings import ApiSettings
from lineage.enums import Role
from orchestrator.settings import OrchestratorSettings
from sandbox.stripe_form import encode
from tests.factories import WEBHOOK_SECRET
from tests.support.servers import serve_in_thread
from tests.workers import run_burst

SECRET = "quote-to-cash-hubspot-secret"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
# HubSpot-defined association type IDs (sandbox/crm.py).
DEAL_TO_COMPANY, DEAL_TO_LINE_ITEM, CHILD_TO_PARENT = 5, 19, 14


def _link(to_id: str, type_id: int) -> dict[str, Any]:
    return {
        "to": {"id": to_id},
        "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
    }


@dataclass
class World:
    api: httpx.AsyncClient
    api_url: str
    sandbox: str
    viewer: dict[str, str]
    settings: OrchestratorSettings

    def crm(
        self, object_type: str, properties: dict[str, str], links: list[Any] | None = None
    ) -> str:
        body: dict[str, Any] = {"properties": properties}
        if links:
            body["associations"] = list(links)
        response = httpx.post(f"{self.sandbox}/crm/crm/v3/objects/{object_type}", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def deal(
        self,
        *,
        company: dict[str, str] | None = None,
        parent: dict[str, str] | None = None,
        line: dict[str, str] | None = None,
        currency: str = "USD",
    ) -> str:
        """A won deal as sales leaves it: a company (perhaps under a parent) and a line item."""
        links = []
        if company is not None:
            up = [_link(self.crm("companies", parent), CHILD_TO_PARENT)] if parent else []
            links.append(_link(self.crm("companies", company, up), DEAL_TO_COMPANY))
        if line is not None:
            links.append(_link(self.crm("line_items", line), DEAL_TO_LINE_ITEM))
        props = {"dealname": "Pro for Acme", "dealstage": "closedwon"}
        if currency:
            props["deal_currency_code"] = currency
        return self.crm("deals", props, links)

    async def won(self, deal_id: str, event_id: int) -> str:
        """HubSpot's webhook for the deal reaching closedwon, signed; the correlation ID."""
        event = {
            "eventId": event_id,
            "subscriptionId": 12345,
            "portalId": 62515,
            "appId": 54321,
            "occurredAt": int(time.time() * 1000),
            "subscriptionType": "deal.propertyChange",
            "attemptNumber": 0,
            "objectId": int(deal_id),
            "propertyName": "dealstage",
            "propertyValue": "closedwon",
            "changeSource": "CRM",
        }
        body = json.dumps([event]).encode()
        url = f"{self.api_url}/v1/webhooks/hubspot"
        stamp = str(int(time.time() * 1000))
        digest = hmac.new(
            SECRET.encode(), b"POST" + url.encode() + body + stamp.encode(), hashlib.sha256
        ).digest()
        headers = {
            "X-HubSpot-Signature-v3": base64.b64encode(digest).decode(),
            "X-HubSpot-Request-Timestamp": stamp,
            "Content-Type": "application/json",
        }
        response = await self.api.post(url, content=body, headers=headers)
        assert response.status_code == 202, response.text
        [accepted] = response.json()["events"]
        assert accepted["status"] == "accepted", accepted
        return str(accepted["correlation_id"])

    async def transaction(self, correlation_id: str) -> dict[str, Any]:
        response = await self.api.get(f"/v1/transactions/{correlation_id}", headers=self.viewer)
        detail: dict[str, Any] = response.json()
        return detail

    async def exceptions(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (
            await self.api.get("/v1/exceptions", headers=self.viewer)
        ).json()["items"]
        return items

    def subscriptions(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = httpx.get(
            f"{self.sandbox}/billing/v1/subscriptions", params={"limit": 100}
        ).json()["data"]
        return data


def _catalogue(billing_url: str) -> str:
    """The pro_monthly plan, as the mapping file names it; returns its price ID."""
    with httpx.Client(base_url=billing_url, headers=FORM) as client:
        client.post("/v1/products", content=encode({"id": "prod_pro_monthly", "name": "Pro"}))
        price = client.post(
            "/v1/prices",
            content=encode(
                {
                    "product": "prod_pro_monthly",
                    "unit_amount": 9900,
                    "currency": "usd",
                    "lookup_key": "pro_monthly",
                    "recurring": {"interval": "month"},
                }
            ),
        ).json()
    return str(price["id"])


@pytest.fixture
def hubspot_api(database_url: str, redis_url: str) -> Iterator[str]:
    settings = ApiSettings(
        database_url=database_url,
        redis_url=redis_url,
        stripe_webhook_secret=WEBHOOK_SECRET,
        hubspot_client_secret=SECRET,
    )
    with serve_in_thread(create_app(settings)) as url:
        yield url


@pytest.fixture
async def world(
    hubspot_api: str,
    sandbox_url: str,
    worker_settings: OrchestratorSettings,
    api_keys: dict[Role, str],
) -> AsyncIterator[World]:
    async with httpx.AsyncClient(base_url=hubspot_api, timeout=30) as api:
        yield World(
            api,
            hubspot_api,
            sandbox_url,
            {"Authorization": f"Bearer {api_keys[Role.VIEWER]}"},
            worker_settings,
        )


COMPANY = {"name": "Acme", "tax_region": "US", "payment_terms": "net_30"}
LINE = {"name": "Pro", "hs_product_id": "9002", "quantity": "4"}


async def test_a_won_deal_becomes_one_subscription_even_after_a_lost_answer(
    world: World,
) -> None:
    price = _catalogue(f"{world.sandbox}/billing")
    deal_id = world.deal(company=COMPANY, line=LINE)
    # Billing commits the subscription, then the answer is lost: the outcome is unknown.
    httpx.post(
        f"{world.sandbox}/billing/_admin/faults",
        json={"faults": "billing.subscriptions:drop_after_commit=1"},
    )

    correlation_id = await world.won(deal_id, 1)
    await run_burst(world.settings)
    # The same deal won again (a redelivery under a new event ID) finds what exists.
    again = await world.won(deal_id, 2)
    await run_burst(world.settings)

    [sub] = world.subscriptions()
    assert [(i["price"]["id"], i["quantity"]) for i in sub["items"]["data"]] == [(price, 4)]
    assert sub["metadata"] == {
        "crm_deal_id": deal_id,
        "crm_company_id": sub["metadata"]["crm_company_id"],
        "legal_entity": "concord_us",
        "tax_region": "US",
        "tax_code": "US-SAAS-EXEMPT",
        "payment_terms": "net_30",
        "mappings_version": "1",
        "external_id": f"crm-deal-{deal_id}",
    }
    customer = httpx.get(f"{world.sandbox}/billing/v1/customers/{sub['customer']}").json()
    assert customer["metadata"] == {
        "external_id": f"crm-company-{sub['metadata']['crm_company_id']}"
    }
    assert customer["name"] == "Acme"
    detail = await world.transaction(correlation_id)
    assert detail["state"] == "posted", detail
    steps = {s["name"]: s for s in detail["runs"][0]["steps"]}
    assert list(steps) == [
        "crm.validate_deal",
        "billing.upsert_customer",
        "billing.create_subscription",
    ]
    attempts = [a["outcome"] for a in steps["billing.create_subscription"]["attempts"]]
    assert attempts == ["failed", "found_existing"]
    assert steps["billing.create_subscription"]["external_id"] == f"crm-deal-{deal_id}"
    refs = {(r["system"], r["object_type"]) for r in detail["external_refs"]}
    assert ("billing", "subscription") in refs
    second = await world.transaction(again)
    assert second["state"] == "posted"


async def test_a_child_company_takes_its_terms_from_its_parent(world: World) -> None:
    _catalogue(f"{world.sandbox}/billing")
    parent = {"name": "Acme Group", "tax_region": "EU", "payment_terms": "net_60"}
    deal_id = world.deal(company={"name": "Acme GmbH"}, parent=parent, line=LINE)

    correlation_id = await world.won(deal_id, 3)
    await run_burst(world.settings)

    assert (await world.transaction(correlation_id))["state"] == "posted"
    [sub] = world.subscriptions()
    assert (sub["metadata"]["tax_code"], sub["metadata"]["payment_terms"]) == (
        "EU-VAT-RC",
        "net_60",
    )


@pytest.mark.parametrize(
    ("deal", "problem"),
    [
        (
            {"company": {"name": "Acme", "payment_terms": "net_30"}, "line": LINE},
            "company {company} has no tax region (property tax_region)",
        ),
        (
            {"company": {"name": "Acme", "tax_region": "US"}, "line": LINE},
            "company {company} has no payment terms (property payment_terms)",
        ),
        (
            {"company": COMPANY, "line": {"name": "Pro", "quantity": "1"}},
            "line item {line} has no product (property hs_product_id)",
        ),
        (
            {"company": COMPANY, "line": {**LINE, "hs_product_id": "555"}},
            "line item {line}: mapping missing: crm_products.555 (mappings v1)",
        ),
        (
            {"company": {**COMPANY, "tax_region": "MARS"}, "line": LINE},
            "company {company}: mapping missing: tax_regions.MARS (mappings v1)",
        ),
        ({"company": None, "line": LINE}, "has no associated companies"),
        ({"company": COMPANY, "line": None}, "has no line items"),
        (
            {"company": COMPANY, "line": LINE, "currency": ""},
            "has no currency (property deal_currency_code)",
        ),
    ],
)
async def test_a_deal_that_cannot_be_billed_is_an_exception_naming_what_is_missing(
    world: World, deal: dict[str, Any], problem: str
) -> None:
    _catalogue(f"{world.sandbox}/billing")
    deal_id = world.deal(**deal)
    links: dict[str, Any] = (
        httpx.get(
            f"{world.sandbox}/crm/crm/v3/objects/deals/{deal_id}",
            params={"associations": "companies,line_items"},
        )
        .json()
        .get("associations", {})
    )
    company = [r["id"] for r in links.get("companies", {}).get("results", [])]
    line = [r["id"] for r in links.get("line_items", {}).get("results", [])]

    correlation_id = await world.won(deal_id, 4)
    await run_burst(world.settings)

    detail = await world.transaction(correlation_id)
    assert detail["state"] == "exception"
    step = {s["name"]: s for s in detail["runs"][0]["steps"]}["crm.validate_deal"]
    assert [a["outcome"] for a in step["attempts"]] == ["failed"]
    [item] = await world.exceptions()
    assert item["correlation_id"] == correlation_id
    expected = f"deal {deal_id}: " + problem.format(
        company=company[0] if company else "", line=line[0] if line else ""
    )
    assert expected in item["message"], item["message"]
    mapping = "mapping missing" in problem
    assert item["classification"] == ("mapping_missing" if mapping else "validation")
    assert world.subscriptions() == []
