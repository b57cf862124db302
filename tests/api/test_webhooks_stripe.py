"""POST /v1/webhooks/stripe: what is refused (and leaves nothing), what is stored, and duplicates."""

import asyncio
import json
import time
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.enums import EventStatus, TxState
from lineage.models import BusinessTransaction, ExternalRef, InboxEvent
from tests.dbutil import inbox_counts
from tests.factories import fixture_bytes, new_invoice, sign, signed_headers, stripe_event

URL = "/v1/webhooks/stripe"
JSON = {"Content-Type": "application/json"}


def finalized_body() -> bytes:
    return json.dumps(stripe_event(invoice=new_invoice())).encode()


Headers = Callable[[bytes], dict[str, str]]
NOT_AN_EVENT_OBJECT = b'{"id": "in_1", "object": "invoice", "type": "x", "data": {"object": {}}}'


def _with(header: Callable[[str], str]) -> Headers:
    """A header built from a good signature of the body, made when the test runs."""
    return lambda body: {**JSON, "Stripe-Signature": header(sign(body))}


# (case, body, headers from body, status, code): signed when the test runs, never at collection,
# so a long suite cannot push a signature out of its 300 s window.
CASES: list[tuple[str, bytes | None, Headers, int, str]] = [
    ("missing header", None, lambda _body: JSON, 400, "signature_missing"),
    ("not key=value", None, _with(lambda _good: "garbage"), 400, "signature_malformed"),
    ("no timestamp", None, _with(lambda good: good.split(",", 1)[1]), 400, "signature_malformed"),
    (
        "v0 scheme only",
        None,
        _with(lambda good: good.replace("v1=", "v0=")),
        400,
        "signature_malformed",
    ),
    (
        "other secret",
        None,
        lambda body: signed_headers(body, secret="whsec_other"),
        400,
        "signature_mismatch",
    ),
    ("invalid JSON", b"{not json", signed_headers, 400, "invalid_json"),
    ("JSON array", b"[1, 2]", signed_headers, 400, "not_an_event"),
    (
        "object without type",
        b'{"id": "evt_1", "data": {"object": {}}}',
        signed_headers,
        400,
        "not_an_event",
    ),
    ("not an event object", NOT_AN_EVENT_OBJECT, signed_headers, 400, "not_an_event"),
    (
        "form content type",
        None,
        lambda body: {**signed_headers(body), "Content-Type": "text/plain"},
        415,
        "unsupported_media_type",
    ),
]


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_refused_requests_store_nothing(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    body: bytes | None,
    headers: Headers,
    status: int,
    code: str,
) -> None:
    content = body if body is not None else finalized_body()

    response = await client.post(URL, content=content, headers=headers(content))

    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert await inbox_counts(sessionmaker) == (0, 0)


async def test_body_changed_after_signing_is_a_mismatch(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    body = finalized_body()

    response = await client.post(URL, content=body + b" ", headers=signed_headers(body))

    assert (response.status_code, response.json()["error"]["code"]) == (400, "signature_mismatch")
    assert await inbox_counts(sessionmaker) == (0, 0)


async def test_vendor_test_vector_verifies_then_fails_the_clock(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # stripe-python's DUMMY_WEBHOOK_PAYLOAD, signed at t=1700000000 (webhook_signature.md):
    # the signature matches, so the refusal is about the timestamp, not the HMAC.
    body = fixture_bytes("stripe/events/stripe-python_test_dummy_webhook_payload.json")
    header = "t=1700000000,v1=3bfab77baf5f7b6991a46c9b53b6547d7afc56148b10468fcad9f35c1992ffbd"

    response = await client.post(URL, content=body, headers={**JSON, "Stripe-Signature": header})

    assert response.json()["error"]["code"] == "timestamp_expired"
    assert await inbox_counts(sessionmaker) == (0, 0)


async def test_oversize_body_is_refused_before_it_is_read(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    event = stripe_event(invoice=new_invoice(description="x" * (256 * 1024)))
    body = json.dumps(event).encode()

    declared = await client.post(URL, content=body, headers=signed_headers(body))

    async def chunks() -> object:
        for start in range(0, len(body), 16 * 1024):
            yield body[start : start + 16 * 1024]

    streamed = await client.post(URL, content=chunks(), headers=signed_headers(body))  # type: ignore[arg-type]

    assert declared.status_code == 413
    assert declared.json()["error"]["code"] == "payload_too_large"
    assert streamed.status_code == 413
    assert await inbox_counts(sessionmaker) == (0, 0)


@pytest.mark.parametrize(
    ("skew_s", "code"), [(-330, "timestamp_expired"), (330, "timestamp_in_future")]
)
async def test_clock_skew_beyond_tolerance_is_refused(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    skew_s: int,
    code: str,
) -> None:
    body = finalized_body()

    response = await client.post(
        URL, content=body, headers=signed_headers(body, timestamp=int(time.time()) + skew_s)
    )

    assert (response.status_code, response.json()["error"]["code"]) == (400, code)
    assert await inbox_counts(sessionmaker) == (0, 0)


@pytest.mark.parametrize("skew_s", [-280, 280])
async def test_clock_skew_within_tolerance_is_accepted(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], skew_s: int
) -> None:
    body = finalized_body()

    response = await client.post(
        URL, content=body, headers=signed_headers(body, timestamp=int(time.time()) + skew_s)
    )

    assert response.status_code == 202, response.text
    assert await inbox_counts(sessionmaker) == (1, 1)


async def test_any_one_of_several_v1_signatures_may_match(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    body = finalized_body()
    good = sign(body)
    rotated = good.replace("v1=", "v1=" + "0" * 64 + ",v1=")

    response = await client.post(URL, content=body, headers={**JSON, "Stripe-Signature": rotated})

    assert response.status_code == 202
    assert await inbox_counts(sessionmaker) == (1, 1)


async def test_finalized_invoice_is_stored_with_its_transaction(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    event = stripe_event(invoice=new_invoice())
    body = json.dumps(event).encode()

    response = await client.post(URL, content=body, headers=signed_headers(body))

    assert response.status_code == 202
    answer = response.json()
    assert answer["status"] == "accepted"
    assert answer["duplicate"] is False
    async with sessionmaker() as session:
        tx = await session.get(BusinessTransaction, answer["correlation_id"])
        stored = await session.scalar(select(InboxEvent))
        refs = set(await session.scalars(select(ExternalRef.external_id)))
    assert tx is not None
    assert tx.state is TxState.RECEIVED
    assert tx.workflow == "invoice_generated"
    invoice = event["data"]["object"]
    assert (tx.invoice_id, tx.customer_id, tx.amount_minor, tx.currency) == (
        invoice["id"],
        invoice["customer"],
        invoice["total"],
        "USD",
    )
    assert stored is not None
    assert stored.source_event_id == event["id"]
    assert stored.payload == event
    assert {invoice["id"], invoice["customer"]} <= refs


@pytest.mark.parametrize(
    ("event_type", "reason_part"),
    [
        ("invoice.created", "draft invoices are recorded"),
        ("customer.updated", "starts no workflow"),
    ],
)
async def test_events_that_start_nothing_are_stored_as_ignored(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    event_type: str,
    reason_part: str,
) -> None:
    body = json.dumps(stripe_event(event_type, invoice=new_invoice())).encode()

    response = await client.post(URL, content=body, headers=signed_headers(body))

    assert response.status_code == 202
    assert response.json()["status"] == "ignored"
    async with sessionmaker() as session:
        tx = await session.get(BusinessTransaction, response.json()["correlation_id"])
        event = await session.scalar(select(InboxEvent))
    assert tx is not None
    assert event is not None
    assert tx.state is TxState.IGNORED
    assert event.status is EventStatus.IGNORED
    assert reason_part in (tx.state_reason or "")


async def test_three_concurrent_deliveries_make_one_transaction(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    body = finalized_body()
    headers = signed_headers(body)

    responses = await asyncio.gather(
        *(client.post(URL, content=body, headers=headers) for _ in range(3))
    )

    assert sorted(r.status_code for r in responses) == [200, 200, 202]
    assert len({r.json()["correlation_id"] for r in responses}) == 1
    assert sum(r.json()["duplicate"] for r in responses) == 2
    assert await inbox_counts(sessionmaker) == (1, 1)
    async with sessionmaker() as session:
        event = await session.scalar(select(InboxEvent))
    assert event is not None
    assert event.deliveries == 3


async def test_same_event_id_with_another_body_is_a_conflict(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    event = stripe_event(invoice=new_invoice())
    first = json.dumps(event).encode()
    event["data"]["object"]["total"] += 1
    second = json.dumps(event).encode()

    accepted = await client.post(URL, content=first, headers=signed_headers(first))
    refused = await client.post(URL, content=second, headers=signed_headers(second))

    assert accepted.status_code == 202
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "event_id_conflict"
    assert await inbox_counts(sessionmaker) == (1, 1)
