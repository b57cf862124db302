"""The ERP port over NetSuite's REST record API (the sandbox speaks the same dialect)."""

import hashlib
import math
import secrets
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx

from lineage.enums import System
from orchestrator.client.canonical import Invoice
from orchestrator.connectors.errors import Conflict, ConnectorError, Retryable, Terminal
from orchestrator.connectors.money import to_major
from orchestrator.connectors.ports import CallContext, TargetRecord

INVOICE_PATH = "/record/v1/invoice"
_SUCCESS = frozenset({200, 201, 204})


def traceparent(correlation_id: str) -> str:
    """A W3C traceparent whose trace id is the correlation ID, so traces and lineage line up."""
    try:
        trace_id = uuid.UUID(correlation_id).hex
    except ValueError:
        trace_id = "0" * 32
    if trace_id == "0" * 32:
        # Not a UUID (or the nil one, which W3C forbids): still one stable trace per correlation.
        trace_id = hashlib.sha256(correlation_id.encode()).hexdigest()[:32]
    span_id = secrets.token_hex(8)
    while span_id == "0" * 16:
        span_id = secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01"


def _json_amount(amount_minor: int, currency: str) -> float:
    major = to_major(amount_minor, currency)
    # NetSuite amounts are JSON numbers; refuse any amount a double would silently alter.
    as_float = float(major)
    if Decimal(repr(as_float)) != major:
        raise Terminal(f"{major} {currency} cannot be sent exactly as a JSON number")
    return as_float


def invoice_body(invoice: Invoice, *, now: datetime | None = None) -> dict[str, Any]:
    """The NetSuite invoice create body for a canonical invoice (amounts in major units)."""
    moment = invoice.period_start or now or datetime.now(UTC)
    # Billing timestamps without a zone are UTC; astimezone() would read them as local time.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    tran_date = moment.astimezone(UTC).date()
    currency = invoice.currency
    items: list[dict[str, Any]] = []
    for line in invoice.lines:
        item: dict[str, Any] = {"amount": _json_amount(line.amount_minor, currency)}
        if line.description is not None:
            item["description"] = line.description
        items.append(item)
    # NetSuite totals the lines; tax or discounts billed outside the lines must still reach the
    # ledger, or the ERP total would differ from what billing invoiced.
    unlined = invoice.amount_minor - sum(line.amount_minor for line in invoice.lines)
    if unlined or not items:
        description = "Invoice total" if not items else "Unitemized amount (tax, discounts)"
        items.append({"amount": _json_amount(unlined, currency), "description": description})
    memo = f"Billing invoice {invoice.invoice_id}"
    if invoice.subscription_id:
        memo += f" (subscription {invoice.subscription_id})"
    return {
        "externalId": invoice.invoice_id,
        "entity": {"externalId": invoice.customer_id},
        "currency": {"refName": currency},
        "tranDate": tran_date.isoformat(),
        "memo": memo,
        "item": {"items": items},
    }


def _retry_after_s(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _vendor_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
        details = body["o:errorDetails"]
        return "; ".join(f"{d.get('o:errorCode', '?')}: {d.get('detail', '')}" for d in details)
    except (ValueError, KeyError, TypeError, AttributeError):
        return response.text[:500]


def classify_response(response: httpx.Response, *, action: str) -> ConnectorError:
    """The connector error for a NetSuite answer that is not the success the call expected."""
    status = response.status_code
    message = f"NetSuite {action} answered {status}: {_vendor_detail(response)}"
    if status == 409:
        return Conflict(message, http_status=status)
    if status == 429:
        retry_after = _retry_after_s(response.headers.get("Retry-After"))
        return Retryable(
            message, http_status=status, classification="rate_limit", retry_after_s=retry_after
        )
    if status == 408:
        return Retryable(message, http_status=status, classification="timeout")
    if status >= 500:
        return Retryable(message, http_status=status, classification="server")
    if status in (401, 403):
        return Terminal(message, http_status=status, classification="auth")
    if 400 <= status < 500:
        return Terminal(message, http_status=status, classification="validation")
    # A redirect or an unexpected 2xx: the contract is broken, and a retry would see the same.
    return Terminal(message, http_status=status, classification="protocol")


def _record_id_from_location(location: str | None) -> str | None:
    if not location:
        return None
    parent, _, last = urlsplit(location).path.rstrip("/").rpartition("/")
    if not last or not parent.endswith(INVOICE_PATH):
        return None
    return unquote(last)


class NetSuiteErp:
    """ErpConnector over NetSuite REST; raises connectors.errors types, never httpx ones."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = httpx.Timeout(timeout_s)
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(follow_redirects=False)

    async def post_invoice(self, invoice: Invoice, *, ctx: CallContext) -> TargetRecord:
        body = invoice_body(invoice)
        headers = {"Idempotency-Key": ctx.idempotency_key, **self._trace_headers(ctx)}
        action = f"POST {INVOICE_PATH}"
        response = await self._send("POST", INVOICE_PATH, action=action, json=body, headers=headers)
        if response.status_code not in _SUCCESS:
            raise classify_response(response, action=action)
        record_id = _record_id_from_location(response.headers.get("Location"))
        if record_id is None:
            # The invoice was probably created: the caller must look it up, not post blind.
            raise Retryable(
                f"NetSuite {action} answered {response.status_code} without a record Location",
                http_status=response.status_code,
                classification="protocol",
            )
        return TargetRecord(
            system=System.ERP,
            object_type="invoice",
            record_id=record_id,
            external_id=invoice.invoice_id,
            http_status=response.status_code,
        )

    async def find_invoice(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None:
        path = f"{INVOICE_PATH}/eid:{quote(external_id, safe='')}"
        action = f"GET {INVOICE_PATH}/eid:{external_id}"
        response = await self._send("GET", path, action=action, headers=self._trace_headers(ctx))
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise classify_response(response, action=action)
        try:
            record = response.json()
            record_id, found_external_id = str(record["id"]), record["externalId"]
        except (ValueError, KeyError, TypeError) as exc:
            raise Terminal(
                f"NetSuite {action} answered 200 without a record: {response.text[:500]}",
                http_status=200,
                classification="protocol",
            ) from exc
        if found_external_id != external_id:
            raise Terminal(
                f"NetSuite {action} answered with externalId {found_external_id!r}",
                http_status=200,
                classification="protocol",
            )
        return TargetRecord(
            system=System.ERP,
            object_type="invoice",
            record_id=record_id,
            external_id=external_id,
            http_status=200,
        )

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    @staticmethod
    def _trace_headers(ctx: CallContext) -> dict[str, str]:
        return {
            "X-Correlation-ID": ctx.correlation_id,
            "traceparent": traceparent(ctx.correlation_id),
        }

    async def _send(
        self,
        method: str,
        path: str,
        *,
        action: str,
        headers: dict[str, str],
        json: dict[str, Any] | None = None,
    ) -> httpx.Response:
        try:
            return await self._client.request(
                method,
                f"{self._base_url}{path}",
                json=json,
                headers=headers,
                timeout=self._timeout,
                follow_redirects=False,
            )
        except httpx.TimeoutException as exc:
            raise Retryable(
                f"NetSuite {action} timed out: {exc!r}", classification="timeout"
            ) from exc
        except httpx.UnsupportedProtocol as exc:
            raise Terminal(
                f"NetSuite base URL is unusable: {exc}", classification="config"
            ) from exc
        except httpx.TransportError as exc:
            raise Retryable(
                f"NetSuite {action} failed: {exc!r}", classification="connection"
            ) from exc
        except httpx.RequestError as exc:
            # E.g. an undecodable body after the server acted: the outcome is unknown.
            raise Retryable(
                f"NetSuite {action} failed: {exc!r}", classification="protocol"
            ) from exc
