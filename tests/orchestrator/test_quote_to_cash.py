"""Quote-to-cash over HTTP: a signed HubSpot closed-won webhook to the API, a real arq worker,
the deal read from the sandbox CRM and the subscription created in the sandbox billing.

The sandbox is served through CrmReads, which notes each CRM read and the transaction that
made it, so a test can see that only the validation step reads the deal.
"""

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from api.main import create_app
from api.settings import ApiSettings
from lineage.enums import Role
from orchestrator.connectors.errors import Terminal
from orchestrator.quote_to_cash import Order
from orchestrator.settings import OrchestratorSettings
from sandbox.app import create_sandbox_app
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
class CrmReads:
    """The sandbox app, noting each CRM record read as (correlation ID, "type/id")."""

    app: ASGIApp
    seen: list[tuple[str, str]] = field(default_factory=list)
    prefix: str = "/crm/crm/v3/objects/"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and scope["path"].startswith(self.prefix)
        ):
            correlation = dict(scope["headers"]).get(b"x-correlation-id", b"").decode()
            self.seen.append((correlation, scope["path"].removeprefix(self.prefix)))
        await self.app(scope, receive, send)

    def by(self, correlation_id: str) -> list[str]:
        return [read for cid, read in self.seen if cid == correlation_id]


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

    def links(self, deal_id: str) -> dict[str, list[str]]:
        """The deal's associated record IDs by type, as the CRM holds them now."""
        links: dict[str, Any] = (
            httpx.get(
                f"{self.sandbox}/crm/crm/v3/objects/deals/{deal_id}",
                params={"associations": "companies,line_items"},
            )
            .json()
            .get("associations", {})
        )
        return {kind: [r["id"] for r in found["results"]] for kind, found in links.items()}

    def faults(self, spec: str) -> None:
        """Replace the sandbox-wide fault SPEC ("" clears it)."""
        response = httpx.post(f"{self.sandbox}/billing/_admin/faults", json={"faults": spec})
        assert response.status_code == 200, response.text

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
def crm_reads() -> CrmReads:
    return CrmReads(create_sandbox_app())


@pytest.fixture
def sandbox_url(crm_reads: CrmReads) -> Iterator[str]:
    """The conftest fixture's sandbox, served through CrmReads (the worker settings use it)."""
    with serve_in_thread(crm_reads) as url:
        yield url


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
    world: World, crm_reads: CrmReads
) -> None:
    price = _catalogue(f"{world.sandbox}/billing")
    deal_id = world.deal(company=COMPANY, line=LINE)
    # Billing commits the subscription, then the answer is lost: the outcome is unknown.
    world.faults("billing.subscriptions:drop_after_commit=1")

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
    # Lineage shows the order as validated; the billing steps (and the retry) built from it.
    company_id = sub["metadata"]["crm_company_id"]
    assert steps["crm.validate_deal"]["output"] == {
        "deal_id": deal_id,
        "deal_name": "Pro for Acme",
        "company_id": company_id,
        "company_name": "Acme",
        "parents": [],
        "currency": "USD",
        "legal_entity": "concord_us",
        "tax_region": "US",
        "tax_code": "US-SAAS-EXEMPT",
        "payment_terms": "net_30",
        "days_until_due": 30,
        "plans": [["pro_monthly", 4]],
        "mappings_version": 1,
    }
    [line] = world.links(deal_id)["line_items"]
    validated = [f"deals/{deal_id}", f"companies/{company_id}", f"line_items/{line}"]
    assert crm_reads.by(correlation_id) == validated
    second = await world.transaction(again)
    assert second["state"] == "posted"
    assert len(crm_reads.by(again)) == 3


async def test_a_child_company_takes_its_terms_from_its_parent(world: World) -> None:
    _catalogue(f"{world.sandbox}/billing")
    parent = {"name": "Acme Group", "tax_region": "EU", "payment_terms": "net_60"}
    deal_id = world.deal(company={"name": "Acme GmbH"}, parent=parent, line=LINE)

    correlation_id = await world.won(deal_id, 3)
    await run_burst(world.settings)

    detail = await world.transaction(correlation_id)
    assert detail["state"] == "posted"
    [sub] = world.subscriptions()
    assert (sub["metadata"]["tax_code"], sub["metadata"]["payment_terms"]) == (
        "EU-VAT-RC",
        "net_60",
    )
    validated = {s["name"]: s for s in detail["runs"][0]["steps"]}["crm.validate_deal"]["output"]
    [parent_id] = validated["parents"]
    assert sub["metadata"]["crm_parent_companies"] == parent_id
    assert validated["days_until_due"] == 60


async def test_a_replay_from_the_subscription_creates_the_order_as_validated(
    world: World, crm_reads: CrmReads, api_keys: dict[Role, str]
) -> None:
    price = _catalogue(f"{world.sandbox}/billing")
    deal_id = world.deal(company=COMPANY, line=LINE)
    world.faults("billing.subscriptions:422=1")
    correlation_id = await world.won(deal_id, 5)
    await run_burst(world.settings)
    failed = await world.transaction(correlation_id)
    assert failed["state"] == "exception"
    world.faults("")
    assert world.subscriptions() == []
    # Sales edits the deal after it was validated; the run being finished is the one checked.
    [line] = world.links(deal_id)["line_items"]
    edited = httpx.patch(
        f"{world.sandbox}/crm/crm/v3/objects/line_items/{line}",
        json={"properties": {"quantity": "9"}},
    )
    assert edited.status_code == 200, edited.text

    response = await world.api.post(
        f"/v1/transactions/{correlation_id}/replay",
        json={"reason": "billing accepts the plan now", "from_step": "billing.create_subscription"},
        headers={"Authorization": f"Bearer {api_keys[Role.OPS]}"},
    )
    assert response.status_code == 202, response.text
    await run_burst(world.settings)

    detail = await world.transaction(correlation_id)
    assert detail["state"] == "posted", detail
    [sub] = world.subscriptions()
    assert [(i["price"]["id"], i["quantity"]) for i in sub["items"]["data"]] == [(price, 4)]
    # The deal, its company and its line item, read once, by the first run's validation.
    assert len(crm_reads.by(correlation_id)) == 3


def test_an_order_survives_lineage_unchanged_and_a_mangled_one_is_refused() -> None:
    order = Order(
        deal_id="1",
        deal_name="Pro for Acme",
        company_id="2",
        company_name="Acme GmbH",
        parents=("3", "4"),
        currency="EUR",
        legal_entity="concord_eu",
        tax_region="EU",
        tax_code="EU-VAT-RC",
        payment_terms="net_60",
        days_until_due=60,
        plans=(("pro_monthly", 4), ("starter_monthly", 1)),
        mappings_version=7,
    )

    stored = json.loads(json.dumps(order.to_output()))

    assert Order.from_output(stored) == order
    with pytest.raises(Terminal) as caught:
        Order.from_output({**stored, "plans": [["pro_monthly", "many"]]})
    assert "plans.0.1" in str(caught.value)
    assert "replay from crm.validate_deal" in str(caught.value)


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
    links = world.links(deal_id)
    company, line = links.get("companies", []), links.get("line_items", [])

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
