"""POST /v1/webhooks/hubspot: X-HubSpot-Signature-v3 over method + URL + body + timestamp."""

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.main import create_app
from api.settings import ApiSettings
from api.signatures import verify_hubspot_signature
from tests.dbutil import inbox_counts
from tests.factories import WEBHOOK_SECRET
from tests.support.servers import serve_in_thread

SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"


def test_sdk_vector_verifies() -> None:
    # hubspot-api-python's test vector (fixtures/hubspot/webhook_signature.md).
    verify_hubspot_signature(
        b"{'example_field':'example_value'}",
        method="POST",
        uri="https://www.example.com/webhook_uri",
        signature="K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y=",
        timestamp="1693657560000",
        secret=SECRET,
        tolerance_s=300,
        now=1693657560 + 299,
    )


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
async def hubspot(hubspot_api: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=hubspot_api, timeout=30) as client:
        yield client


def _headers(url: str, body: bytes, *, secret: str = SECRET, skew_s: float = 0) -> dict[str, str]:
    stamp = str(int((time.time() + skew_s) * 1000))
    digest = hmac.new(
        secret.encode(), b"POST" + url.encode() + body + stamp.encode(), hashlib.sha256
    ).digest()
    return {
        "X-HubSpot-Signature-v3": base64.b64encode(digest).decode(),
        "X-HubSpot-Request-Timestamp": stamp,
        "Content-Type": "application/json",
    }


def _deal_event(event_id: int, name: str = "dealstage", value: str = "closedwon") -> dict[str, Any]:
    # The shape of HubSpot's v1 docs example batch, as a deal property change.
    return {
        "eventId": event_id,
        "subscriptionId": 12345,
        "portalId": 62515,
        "occurredAt": int(time.time() * 1000),
        "subscriptionType": "deal.propertyChange",
        "attemptNumber": 0,
        "objectId": 123,
        "propertyName": name,
        "propertyValue": value,
        "changeSource": "CRM",
        "appId": 54321,
        "sourceId": "Q-2026-0077",
    }


async def test_signed_batch_stores_each_event(
    hubspot: httpx.AsyncClient, hubspot_api: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    from_billing = {**_deal_event(4), "sourceId": "sub_123"}
    body = json.dumps(
        [
            _deal_event(1),
            _deal_event(2, "renewal_risk", "high"),
            _deal_event(3, "amount", "100"),
            from_billing,
        ]
    ).encode()
    url = f"{hubspot_api}/v1/webhooks/hubspot"

    first = await hubspot.post(url, content=body, headers=_headers(url, body))
    again = await hubspot.post(url, content=body, headers=_headers(url, body))

    assert first.status_code == 202, first.text
    # A won deal Concord itself wrote from a billing subscription creates nothing new.
    assert [e["status"] for e in first.json()["events"]] == [
        "accepted",
        "accepted",
        "ignored",
        "ignored",
    ]
    assert again.status_code == 200
    assert all(e["duplicate"] for e in again.json()["events"])
    assert await inbox_counts(sessionmaker) == (4, 4)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"drop": "X-HubSpot-Signature-v3"}, "signature_missing"),
        ({"secret": "other"}, "signature_mismatch"),
        ({"skew_s": -330}, "timestamp_expired"),
        ({"skew_s": 330}, "timestamp_in_future"),
        ({"body": b'{"eventId": 1}'}, "not_an_event"),
        ({"body": b"[nope"}, "invalid_json"),
    ],
)
async def test_refusals_store_nothing(
    hubspot: httpx.AsyncClient,
    hubspot_api: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    change: dict[str, Any],
    code: str,
) -> None:
    url = f"{hubspot_api}/v1/webhooks/hubspot"
    body = change.get("body", json.dumps([_deal_event(7)]).encode())
    headers = _headers(
        url, body, secret=change.get("secret", SECRET), skew_s=change.get("skew_s", 0)
    )
    headers.pop(change.get("drop", ""), None)

    response = await hubspot.post(url, content=body, headers=headers)

    assert (response.status_code, response.json()["error"]["code"]) == (400, code)
    assert await inbox_counts(sessionmaker) == (0, 0)
