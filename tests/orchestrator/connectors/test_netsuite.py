import asyncio
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from lineage.enums import ErrorClass, System
from orchestrator.client.canonical import Invoice, InvoiceLine
from orchestrator.connectors.errors import Conflict, Retryable, Terminal
from orchestrator.connectors.money import to_major, to_minor
from orchestrator.connectors.netsuite import NetSuiteErp, traceparent
from orchestrator.connectors.ports import CallContext
from sandbox.app import create_sandbox_app
from tests.support.servers import serve_in_thread

CORRELATION_ID = "0190f1a2-3b4c-7d5e-8f60-718293a4b5c6"
CTX = CallContext(correlation_id=CORRELATION_ID, idempotency_key=f"{CORRELATION_ID}:erp.post")


def make_invoice(invoice_id: str = "in_1", **overrides: Any) -> Invoice:
    fields: dict[str, Any] = {
        "invoice_id": invoice_id,
        "customer_id": "cus_1",
        "subscription_id": "sub_1",
        "amount_minor": 1234,
        "currency": "USD",
        "period_start": datetime(2024, 3, 1, 23, 30, tzinfo=UTC),
        "lines": [
            InvoiceLine(description="Pro plan", amount_minor=1000),
            InvoiceLine(description="Seats", amount_minor=234),
        ],
    }
    fields.update(overrides)
    return Invoice(**fields)


@pytest.fixture
def erp_url() -> Iterator[str]:
    with serve_in_thread(create_sandbox_app()) as url:
        yield f"{url}/erp"


@pytest.fixture
async def netsuite(erp_url: str) -> AsyncIterator[NetSuiteErp]:
    connector = NetSuiteErp(erp_url)
    yield connector
    await connector.aclose()


async def erp_get(erp_url: str, path: str) -> Any:
    async with httpx.AsyncClient(base_url=erp_url) as client:
        response = await client.get(path)
    response.raise_for_status()
    return response.json()


async def ledger(erp_url: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = (await erp_get(erp_url, "/_admin/ledger"))["records"]
    return records


async def test_post_invoice_returns_record_id_from_location(netsuite: NetSuiteErp) -> None:
    await netsuite.post_invoice(make_invoice("in_0"), ctx=CallContext("c0", "k0"))

    record = await netsuite.post_invoice(make_invoice("in_1"), ctx=CTX)

    assert record.system == System.ERP
    assert record.object_type == "invoice"
    assert record.record_id == "2"
    assert record.external_id == "in_1"
    assert record.http_status == 204


async def test_post_invoice_maps_the_canonical_invoice(netsuite: NetSuiteErp, erp_url: str) -> None:
    record = await netsuite.post_invoice(make_invoice("in_1"), ctx=CTX)

    posted = await erp_get(erp_url, f"/record/v1/invoice/{record.record_id}")
    assert posted["externalId"] == "in_1"
    assert posted["entity"] == {"externalId": "cus_1"}
    assert posted["currency"] == {"refName": "USD"}
    assert posted["tranDate"] == "2024-03-01"
    assert "in_1" in posted["memo"]
    assert "sub_1" in posted["memo"]
    assert posted["total"] == 12.34
    lines = [(line["amount"], line["description"]) for line in posted["item"]["items"]]
    assert lines == [(10.0, "Pro plan"), (2.34, "Seats")]


@pytest.mark.parametrize(
    ("currency", "amount_minor", "total"),
    [("JPY", 1234, 1234), ("USD", 1234, 12.34), ("KWD", 1234, 1.234), ("BHD", 5, 0.005)],
)
async def test_post_invoice_converts_minor_units_by_currency(
    netsuite: NetSuiteErp, erp_url: str, currency: str, amount_minor: int, total: float
) -> None:
    invoice = make_invoice(currency=currency, amount_minor=amount_minor, lines=[])

    await netsuite.post_invoice(invoice, ctx=CTX)

    [row] = await ledger(erp_url)
    assert (row["total"], row["currency"]) == (total, currency)


async def test_post_invoice_keeps_unitemized_amount(netsuite: NetSuiteErp, erp_url: str) -> None:
    # Tax billed outside the lines: the ERP total must still equal the billed amount.
    invoice = make_invoice(amount_minor=1334)

    record = await netsuite.post_invoice(invoice, ctx=CTX)

    posted = await erp_get(erp_url, f"/record/v1/invoice/{record.record_id}")
    assert posted["total"] == 13.34
    assert [line["amount"] for line in posted["item"]["items"]] == [10.0, 2.34, 1.0]


async def test_post_invoice_sends_idempotency_and_trace_headers(
    netsuite: NetSuiteErp, erp_url: str
) -> None:
    await netsuite.post_invoice(make_invoice(), ctx=CTX)

    [row] = await ledger(erp_url)
    assert row["idempotency_key"] == CTX.idempotency_key
    assert row["correlation_id"] == CORRELATION_ID
    trace_id = uuid.UUID(CORRELATION_ID).hex
    assert re.fullmatch(rf"00-{trace_id}-[0-9a-f]{{16}}-01", row["traceparent"])


async def test_post_invoice_repeat_with_same_key_returns_same_record(
    netsuite: NetSuiteErp, erp_url: str
) -> None:
    first = await netsuite.post_invoice(make_invoice(), ctx=CTX)
    repeat = await netsuite.post_invoice(make_invoice(), ctx=CTX)

    assert repeat.record_id == first.record_id
    [row] = await ledger(erp_url)
    assert row["create_calls"] == 2


async def test_post_invoice_duplicate_external_id_raises_conflict(
    netsuite: NetSuiteErp, erp_url: str
) -> None:
    await netsuite.post_invoice(make_invoice(), ctx=CTX)

    with pytest.raises(Conflict) as caught:
        await netsuite.post_invoice(make_invoice(), ctx=CallContext(CORRELATION_ID, "other-key"))

    assert caught.value.http_status == 409
    assert caught.value.error_class == ErrorClass.CONFLICT
    assert "DUPLICATE_EXTERNAL_ID" in str(caught.value)
    assert len(await ledger(erp_url)) == 1


async def test_find_invoice_returns_posted_record(netsuite: NetSuiteErp) -> None:
    posted = await netsuite.post_invoice(make_invoice("in/1 ü"), ctx=CTX)

    found = await netsuite.find_invoice("in/1 ü", ctx=CTX)

    assert found is not None
    assert (found.record_id, found.external_id) == (posted.record_id, "in/1 ü")
    assert (found.system, found.object_type, found.http_status) == (System.ERP, "invoice", 200)


async def test_find_invoice_returns_none_when_absent(netsuite: NetSuiteErp) -> None:
    await netsuite.post_invoice(make_invoice("in_1"), ctx=CTX)

    assert await netsuite.find_invoice("in_2", ctx=CTX) is None


@pytest.fixture
def refused_url() -> Iterator[str]:
    # Bound but never listening: connects are refused, and no other test can take the port.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/erp"


CALLS: dict[str, Callable[[NetSuiteErp], Awaitable[object]]] = {
    "post": lambda connector: connector.post_invoice(make_invoice(), ctx=CTX),
    "find": lambda connector: connector.find_invoice("in_1", ctx=CTX),
}


@pytest.mark.parametrize("call", sorted(CALLS))
async def test_connection_refused_is_retryable_connection(refused_url: str, call: str) -> None:
    connector = NetSuiteErp(refused_url)
    try:
        with pytest.raises(Retryable) as caught:
            await CALLS[call](connector)
    finally:
        await connector.aclose()

    assert caught.value.classification == "connection"
    assert caught.value.error_class == ErrorClass.RETRYABLE
    assert caught.value.http_status is None


def answering(status: int, *, headers: dict[str, str] | None = None, body: Any = None) -> FastAPI:
    """A throwaway ERP that gives every request the same answer."""
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def answer() -> Response:
        if body is None:
            return Response(status_code=status, headers=headers)
        return JSONResponse(body, status_code=status, headers=headers)

    return app


def netsuite_error(status: int, code: str, detail: str) -> dict[str, Any]:
    return {
        "title": "x",
        "status": status,
        "o:errorDetails": [{"detail": detail, "o:errorCode": code}],
    }


async def post_to(app: FastAPI, *, timeout_s: float = 10.0) -> Exception:
    """Post an invoice to `app` and return what the connector raised."""
    with serve_in_thread(app) as url:
        connector = NetSuiteErp(url, timeout_s=timeout_s)
        try:
            await connector.post_invoice(make_invoice(), ctx=CTX)
        except Exception as exc:
            return exc
        finally:
            await connector.aclose()
    raise AssertionError("the connector accepted a failing answer")


async def test_rate_limit_is_retryable_with_retry_after_seconds() -> None:
    exc = await post_to(answering(429, headers={"Retry-After": "7"}))

    assert isinstance(exc, Retryable)
    assert (exc.classification, exc.retry_after_s, exc.http_status) == ("rate_limit", 7.0, 429)


async def test_rate_limit_without_retry_after_leaves_the_delay_to_the_engine() -> None:
    exc = await post_to(answering(429))

    assert isinstance(exc, Retryable)
    assert (exc.classification, exc.retry_after_s) == ("rate_limit", None)


async def test_rate_limit_reads_retry_after_http_date() -> None:
    retry_at = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)

    exc = await post_to(answering(429, headers={"Retry-After": retry_at}))

    assert isinstance(exc, Retryable)
    assert exc.classification == "rate_limit"
    assert exc.retry_after_s is not None
    assert 25 <= exc.retry_after_s <= 30


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_error_is_retryable(status: int) -> None:
    exc = await post_to(answering(status))

    assert isinstance(exc, Retryable)
    assert (exc.classification, exc.http_status, exc.retry_after_s) == ("server", status, None)


async def test_unavailable_with_retry_after_says_when_to_come_back() -> None:
    exc = await post_to(answering(503, headers={"Retry-After": "4"}))

    assert isinstance(exc, Retryable)
    assert (exc.classification, exc.retry_after_s) == ("server", 4.0)


async def test_retry_after_on_a_500_is_not_a_promise_and_is_ignored() -> None:
    exc = await post_to(answering(500, headers={"Retry-After": "4"}))

    assert isinstance(exc, Retryable)
    assert exc.retry_after_s is None


async def test_validation_error_is_terminal_with_vendor_detail() -> None:
    body = netsuite_error(400, "USER_ERROR", "Invalid value for field entity")

    exc = await post_to(answering(400, body=body))

    assert isinstance(exc, Terminal)
    assert (exc.classification, exc.http_status) == ("validation", 400)
    assert exc.error_class == ErrorClass.TERMINAL
    assert "Invalid value for field entity" in str(exc)
    assert "USER_ERROR" in str(exc)


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_error_is_terminal_auth(status: int) -> None:
    exc = await post_to(answering(status, body=netsuite_error(status, "INVALID_LOGIN", "no")))

    assert isinstance(exc, Terminal)
    assert (exc.classification, exc.http_status) == ("auth", status)


async def test_request_timeout_status_is_retryable_timeout() -> None:
    exc = await post_to(answering(408))

    assert isinstance(exc, Retryable)
    assert (exc.classification, exc.http_status) == ("timeout", 408)


async def test_created_without_location_is_retryable() -> None:
    # Probably created: the engine must look the invoice up rather than trust a blind repost.
    exc = await post_to(answering(204))

    assert isinstance(exc, Retryable)
    assert exc.http_status == 204


def stalling_app() -> FastAPI:
    app = FastAPI()

    @app.post("/record/v1/invoice")
    async def stall(request: Request) -> Response:
        # Hold the answer until the client gives up, so the server can shut down promptly.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not await request.is_disconnected():
            await asyncio.sleep(0.01)
        return Response(status_code=204, headers={"Location": "/record/v1/invoice/1"})

    return app


async def test_slow_answer_is_retryable_timeout() -> None:
    started = time.monotonic()

    exc = await post_to(stalling_app(), timeout_s=0.2)

    assert isinstance(exc, Retryable)
    assert (exc.classification, exc.http_status) == ("timeout", None)
    assert time.monotonic() - started < 4


async def test_find_invoice_classifies_failures() -> None:
    with serve_in_thread(answering(503)) as url:
        connector = NetSuiteErp(url)
        try:
            with pytest.raises(Retryable) as caught:
                await connector.find_invoice("in_1", ctx=CTX)
        finally:
            await connector.aclose()

    assert (caught.value.classification, caught.value.http_status) == ("server", 503)


async def test_injected_client_is_used_and_left_open(erp_url: str) -> None:
    async with httpx.AsyncClient() as client:
        connector = NetSuiteErp(erp_url, client=client)
        await connector.post_invoice(make_invoice(), ctx=CTX)
        await connector.aclose()

        assert not client.is_closed
        assert await connector.find_invoice("in_1", ctx=CTX) is not None


def test_traceparent_uses_correlation_id_as_trace_id() -> None:
    first, second = traceparent(CORRELATION_ID), traceparent(CORRELATION_ID)

    assert first.split("-")[1] == uuid.UUID(CORRELATION_ID).hex
    assert first.split("-")[2] != second.split("-")[2]


def test_traceparent_hashes_a_non_uuid_correlation_id() -> None:
    value = traceparent("not-a-uuid")

    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", value)
    assert value.split("-")[1] == traceparent("not-a-uuid").split("-")[1]
    assert value.split("-")[1] != "0" * 32


class TestMoney:
    @pytest.mark.parametrize(
        ("minor", "currency", "major"),
        [
            (1234, "JPY", Decimal("1234")),
            (1234, "USD", Decimal("12.34")),
            (1234, "KWD", Decimal("1.234")),
            (-5, "USD", Decimal("-0.05")),
        ],
    )
    def test_to_major_and_back(self, minor: int, currency: str, major: Decimal) -> None:
        assert to_major(minor, currency) == major
        assert to_minor(major, currency) == minor

    def test_to_minor_is_exact_for_float_input(self) -> None:
        # 10.05 * 100 is 1004.9999999999999 in binary floating point.
        assert to_minor(10.05, "USD") == 1005
        assert to_minor(1.005, "KWD") == 1005
        assert to_minor(500, "JPY") == 500

    @pytest.mark.parametrize(
        ("amount", "currency"),
        [(Decimal("0.5"), "JPY"), (Decimal("1.005"), "USD"), ("1.0005", "KWD"), ("nan", "USD")],
    )
    def test_to_minor_rejects_precision_the_currency_lacks(
        self, amount: Decimal | str, currency: str
    ) -> None:
        with pytest.raises(ValueError, match="amount|minor unit"):
            to_minor(amount, currency)
