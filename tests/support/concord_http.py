"""Drive a running Concord over HTTP: signed webhooks in, sandbox ledgers and lineage out."""

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from api.main import create_app
from api.settings import ApiSettings
from orchestrator.settings import OrchestratorSettings
from tests.factories import (
    WEBHOOK_SECRET,
    fixture_subscription,
    signed_headers,
    subscription_event,
)
from tests.support.queued import wakeups_queued
from tests.support.servers import serve_in_thread
from tests.workers import run_burst

HUBSPOT_SECRET = "hubspot-client-secret-for-tests"


@contextmanager
def serve_api(database_url: str, redis_url: str) -> Iterator[str]:
    """The API with both Stripe and HubSpot intake configured."""
    settings = ApiSettings(
        database_url=database_url,
        redis_url=redis_url,
        stripe_webhook_secret=WEBHOOK_SECRET,
        hubspot_client_secret=HUBSPOT_SECRET,
    )
    with serve_in_thread(create_app(settings)) as url:
        yield url


def hubspot_headers(url: str, body: bytes) -> dict[str, str]:
    """X-HubSpot-Signature-v3: HMAC-SHA256 over method + URL + body + millisecond timestamp."""
    stamp = str(int(time.time() * 1000))
    digest = hmac.new(
        HUBSPOT_SECRET.encode(), b"POST" + url.encode() + body + stamp.encode(), hashlib.sha256
    ).digest()
    return {
        "X-HubSpot-Signature-v3": base64.b64encode(digest).decode(),
        "X-HubSpot-Request-Timestamp": stamp,
        "Content-Type": "application/json",
    }


@dataclass
class Concord:
    """One system under test: the API, the sandbox and a way to run the workers dry."""

    api: httpx.AsyncClient
    sandbox_url: str
    settings: OrchestratorSettings
    viewer_key: str

    async def stripe(self, event: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(event).encode()
        response = await self.api.post(
            "/v1/webhooks/stripe", content=body, headers=signed_headers(body)
        )
        assert response.status_code in (200, 202), response.text
        answer: dict[str, Any] = response.json()
        await self._queued([answer])
        return answer

    async def hubspot(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        body = json.dumps(events).encode()
        url = f"{self.api.base_url}".rstrip("/") + "/v1/webhooks/hubspot"
        response = await self.api.post(
            "/v1/webhooks/hubspot", content=body, headers=hubspot_headers(url, body)
        )
        assert response.status_code in (200, 202), response.text
        answers: list[dict[str, Any]] = response.json()["events"]
        await self._queued(answers)
        return answers

    async def _queued(self, answers: list[dict[str, Any]]) -> None:
        """Wait until each newly accepted transaction's wake-up is queued (tests.support.queued)."""
        fresh = [
            str(a["correlation_id"])
            for a in answers
            if not a.get("duplicate") and a.get("status") == "accepted"
        ]
        await wakeups_queued(self.settings.redis_url, fresh, api=self.api, key=self.viewer_key)

    async def run_workers(self) -> None:
        """A real arq worker until nothing is queued, deferred retries included."""
        await run_burst(self.settings)

    async def set_faults(self, spec: str) -> None:
        """Replace the sandbox-wide fault plan ("" clears it) through its admin API."""
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.post(
                f"{self.sandbox_url}/erp/_admin/faults", json={"faults": spec}
            )
        assert response.status_code == 200, response.text

    async def ledger(self, system: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.get(f"{self.sandbox_url}/{system}/_admin/ledger")
        assert response.status_code == 200, response.text
        records: list[dict[str, Any]] = response.json()["records"]
        return records

    async def vendor(self, path: str, **params: str) -> httpx.Response:
        """GET from a sandbox system's vendor API, e.g. /crm/crm/v3/objects/deals/ID."""
        async with httpx.AsyncClient(timeout=10) as http:
            return await http.get(f"{self.sandbox_url}{path}", params=params)

    async def billing_subscription(self) -> dict[str, Any]:
        """A monthly subscription created in the sandbox billing over its Stripe API."""
        async with httpx.AsyncClient(base_url=f"{self.sandbox_url}/billing/v1", timeout=10) as http:

            async def create(path: str, form: dict[str, str]) -> dict[str, Any]:
                response = await http.post(path, data=form)
                assert response.status_code == 200, response.text
                created: dict[str, Any] = response.json()
                return created

            customer = await create("/customers", {"name": "Renewal Risk Inc"})
            product = await create("/products", {"name": "Platform"})
            price = await create(
                "/prices",
                {
                    "product": product["id"],
                    "unit_amount": "2000",
                    "currency": "usd",
                    "recurring[interval]": "month",
                },
            )
            return await create(
                "/subscriptions",
                {"customer": customer["id"], "items[0][price]": price["id"]},
            )

    async def billing_search(self, query: str) -> list[dict[str, Any]]:
        response = await self.vendor("/billing/v1/subscriptions/search", query=query)
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["data"]
        return found

    async def crm_object(self, object_type: str, external_id: str) -> dict[str, Any]:
        """A HubSpot object by Concord's external ID, as the CRM's own API returns it."""
        response = await self.vendor(
            f"/crm/crm/v3/objects/{object_type}/{external_id}", idProperty="external_id"
        )
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    async def transaction(self, correlation_id: str) -> dict[str, Any]:
        response = await self.api.get(
            f"/v1/transactions/{correlation_id}",
            headers={"Authorization": f"Bearer {self.viewer_key}"},
        )
        assert response.status_code == 200, response.text
        detail: dict[str, Any] = response.json()
        return detail

    async def open_exceptions(self) -> list[dict[str, Any]]:
        response = await self.api.get(
            "/v1/exceptions", headers={"Authorization": f"Bearer {self.viewer_key}"}
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items


def steps_of(detail: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The latest run's steps by name."""
    return {step["name"]: step for step in detail["runs"][-1]["steps"]}


def by_type(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        grouped.setdefault(str(record["type"]), []).append(record)
    return grouped


@asynccontextmanager
async def concord_system(
    database_url: str,
    redis_url: str,
    sandbox_url: str,
    settings: OrchestratorSettings,
    viewer_key: str,
) -> AsyncIterator[Concord]:
    with serve_api(database_url, redis_url) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as api:
            yield Concord(api, sandbox_url, settings, viewer_key)


def created_event(seconds_ago: int = 60, **fields: Any) -> dict[str, Any]:
    """customer.subscription.created for the fixture subscription, a little in the past."""
    return subscription_event(
        "customer.subscription.created",
        subscription=fixture_subscription(**fields),
        created=int(time.time()) - seconds_ago,
    )


def renewal_risk_event(subscription_id: str, event_id: int = 991) -> dict[str, Any]:
    """A HubSpot deal.propertyChange (the docs' v1 batch shape) naming the subscription."""
    return {
        "eventId": event_id,
        "subscriptionId": 12345,
        "portalId": 62515,
        "occurredAt": int(time.time() * 1000),
        "subscriptionType": "deal.propertyChange",
        "attemptNumber": 0,
        "objectId": 42,
        "propertyName": "renewal_risk",
        "propertyValue": "high",
        "changeSource": "CRM",
        "sourceId": subscription_id,
    }
