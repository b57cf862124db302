"""The ERP port over NetSuite's REST record API (the sandbox speaks the same dialect)."""

from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx

from lineage.enums import System
from orchestrator.client.canonical import Invoice
from orchestrator.connectors.errors import ConnectorError, Retryable, Terminal
from orchestrator.connectors.http import HttpAdapter, classify_status, traceparent
from orchestrator.connectors.money import to_major
from orchestrator.connectors.ports import (
    CallContext,
    CustomerRecord,
    JournalEntryRecord,
    PaymentRecord,
    RevenueScheduleRecord,
    TargetRecord,
)
from orchestrator.mappings import Coding, LineCoding

__all__ = ["NetSuiteErp", "classify_response", "invoice_body", "traceparent"]

RECORD_PATH = "/record/v1"
INVOICE_PATH = "/record/v1/invoice"
_SUCCESS = frozenset({200, 201, 204})


def _json_amount(amount_minor: int, currency: str) -> float:
    major = to_major(amount_minor, currency)
    # NetSuite amounts are JSON numbers; refuse any amount a double would silently alter.
    as_float = float(major)
    if Decimal(repr(as_float)) != major:
        raise Terminal(f"{major} {currency} cannot be sent exactly as a JSON number")
    return as_float


def _coded(item: dict[str, Any], line: LineCoding | None, coding: Coding | None) -> dict[str, Any]:
    if line is None or coding is None:
        return item
    return {
        **item,
        "item": {"externalId": line.item},
        "account": {"id": line.revenue_account},
        "taxCode": {"refName": coding.tax_code},
    }


def invoice_body(
    invoice: Invoice, *, now: datetime | None = None, coding: Coding | None = None
) -> dict[str, Any]:
    """The NetSuite invoice create body for a canonical invoice (amounts in major units).

    With `coding` (from mappings.toml) each line names its item, revenue account and tax code,
    and the invoice its subsidiary; the memo names the mappings version that coded it.
    """
    moment = invoice.period_start or now or datetime.now(UTC)
    # Billing timestamps without a zone are UTC; astimezone() would read them as local time.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    tran_date = moment.astimezone(UTC).date()
    currency = invoice.currency
    items: list[dict[str, Any]] = []
    for n, line in enumerate(invoice.lines):
        item: dict[str, Any] = {"amount": _json_amount(line.amount_minor, currency)}
        if line.description is not None:
            item["description"] = line.description
        items.append(_coded(item, coding.lines[n] if coding else None, coding))
    # NetSuite totals the lines; tax or discounts billed outside the lines must still reach the
    # ledger, or the ERP total would differ from what billing invoiced.
    unlined = invoice.amount_minor - sum(line.amount_minor for line in invoice.lines)
    if unlined or not items:
        description = "Invoice total" if not items else "Unitemized amount (tax, discounts)"
        extra = {"amount": _json_amount(unlined, currency), "description": description}
        items.append(_coded(extra, coding.unitemized if coding else None, coding))
    memo = f"Billing invoice {invoice.invoice_id}"
    if invoice.subscription_id:
        memo += f" (subscription {invoice.subscription_id})"
    body: dict[str, Any] = {
        "externalId": invoice.invoice_id,
        "entity": {"externalId": invoice.customer_id},
        "currency": {"refName": currency},
        "tranDate": tran_date.isoformat(),
        "memo": memo,
        "item": {"items": items},
    }
    if coding is not None:
        body["subsidiary"] = {"id": coding.subsidiary}
        body["currency"] = {"refName": coding.erp_currency}
        body["memo"] = f"{memo}; coded by mappings v{coding.version}"
    return body


def _vendor_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
        details = body["o:errorDetails"]
        return "; ".join(f"{d.get('o:errorCode', '?')}: {d.get('detail', '')}" for d in details)
    except (ValueError, KeyError, TypeError, AttributeError):
        return response.text[:500]


def classify_response(response: httpx.Response, *, action: str) -> ConnectorError:
    """The connector error for a NetSuite answer that is not the success the call expected."""
    message = f"NetSuite {action} answered {response.status_code}: {_vendor_detail(response)}"
    return classify_status(response, message)


def _record_id_from_location(location: str | None, record_type: str = "invoice") -> str | None:
    if not location:
        return None
    parent, _, last = urlsplit(location).path.rstrip("/").rpartition("/")
    if not last or not parent.endswith(f"{RECORD_PATH}/{record_type}"):
        return None
    return unquote(last)


def _date(value: date) -> str:
    return value.isoformat()


def customer_body(customer: CustomerRecord) -> dict[str, Any]:
    body: dict[str, Any] = {"externalId": customer.external_id, "companyName": customer.name}
    if customer.email:
        body["email"] = customer.email
    if customer.currency:
        body["currency"] = {"refName": customer.currency}
    if customer.subsidiary:
        body["subsidiary"] = {"id": customer.subsidiary}
    return body


def payment_body(payment: PaymentRecord) -> dict[str, Any]:
    amount = _json_amount(payment.amount_minor, payment.currency)
    return {
        "externalId": payment.external_id,
        "customer": {"externalId": payment.customer_external_id},
        "currency": {"refName": payment.currency},
        "tranDate": _date(payment.paid_on),
        "payment": amount,
        "apply": {
            "items": [
                {
                    "doc": {"externalId": payment.invoice_external_id},
                    "apply": True,
                    "amount": amount,
                }
            ]
        },
    }


def journal_entry_body(entry: JournalEntryRecord) -> dict[str, Any]:
    lines: list[dict[str, Any]] = []
    for line in entry.lines:
        if (line.debit_minor > 0) == (line.credit_minor > 0):
            raise Terminal(f"journal line on {line.account} needs exactly one of debit or credit")
        side, minor = (
            ("debit", line.debit_minor) if line.debit_minor else ("credit", line.credit_minor)
        )
        item: dict[str, Any] = {
            "account": {"id": line.account},
            side: _json_amount(minor, entry.currency),
        }
        if line.memo:
            item["memo"] = line.memo
        lines.append(item)
    body: dict[str, Any] = {
        "externalId": entry.external_id,
        "currency": {"refName": entry.currency},
        "tranDate": _date(entry.posted_on),
        "line": {"items": lines},
    }
    if entry.memo:
        body["memo"] = entry.memo
    if entry.subsidiary:
        body["subsidiary"] = {"id": entry.subsidiary}
    return body


def revenue_schedule_body(
    schedule: RevenueScheduleRecord, *, coding: Coding | None = None
) -> dict[str, Any]:
    currency = schedule.currency
    body = {
        "externalId": schedule.external_id,
        "createdFrom": {"externalId": schedule.invoice_external_id},
        "currency": {"refName": currency},
        "amount": _json_amount(schedule.amount_minor, currency),
        "plannedRevenue": {
            "items": [
                {"postingPeriod": p, "amount": _json_amount(a, currency)}
                for p, a in schedule.periods
            ]
        },
    }
    if coding is not None:
        body["subsidiary"] = {"id": coding.subsidiary}
        body["revenueElements"] = {
            "items": [
                {"item": {"externalId": line.item}, "account": {"id": line.revenue_account}}
                for line in coding.lines
            ]
        }
        body["memo"] = f"coded by mappings v{coding.version}"
    return body


class NetSuiteErp:
    """ErpConnector (and ErpLedgerConnector) over NetSuite REST; raises connectors.errors types.

    With `allow` (and no client), calls pass the outbound guard with that allow-list.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        client: httpx.AsyncClient | None = None,
        allow: Sequence[str] | None = None,
    ) -> None:
        self._http = HttpAdapter(
            "NetSuite",
            base_url,
            timeout_s=timeout_s,
            client=client,
            allow=allow,
            detail=_vendor_detail,
        )

    async def post_invoice(
        self, invoice: Invoice, *, ctx: CallContext, coding: Coding | None = None
    ) -> TargetRecord:
        body = invoice_body(invoice, coding=coding)
        return await self._create("invoice", body, invoice.invoice_id, ctx)

    async def find_invoice(self, external_id: str, *, ctx: CallContext) -> TargetRecord | None:
        return await self.find_record("invoice", external_id, ctx=ctx)

    async def upsert_customer(self, customer: CustomerRecord, *, ctx: CallContext) -> TargetRecord:
        """PUT by external ID: creates or updates, so a repeat is harmless by construction."""
        path = f"{RECORD_PATH}/customer/eid:{quote(customer.external_id, safe='')}"
        action = f"PUT {RECORD_PATH}/customer/eid:{customer.external_id}"
        headers = {"Idempotency-Key": ctx.idempotency_key}
        response = await self._http.send(
            "PUT", path, action=action, ctx=ctx, json=customer_body(customer), headers=headers
        )
        return self._created(response, "customer", customer.external_id, action)

    async def post_payment(self, payment: PaymentRecord, *, ctx: CallContext) -> TargetRecord:
        return await self._create(
            "customerpayment", payment_body(payment), payment.external_id, ctx
        )

    async def post_journal_entry(
        self, entry: JournalEntryRecord, *, ctx: CallContext
    ) -> TargetRecord:
        return await self._create("journalentry", journal_entry_body(entry), entry.external_id, ctx)

    async def post_revenue_schedule(
        self, schedule: RevenueScheduleRecord, *, ctx: CallContext, coding: Coding | None = None
    ) -> TargetRecord:
        body = revenue_schedule_body(schedule, coding=coding)
        return await self._create("revenueplan", body, schedule.external_id, ctx)

    async def find_record(
        self, object_type: str, external_id: str, *, ctx: CallContext
    ) -> TargetRecord | None:
        record = await self.read_record(object_type, external_id, ctx=ctx)
        if record is None:
            return None
        return TargetRecord(System.ERP, object_type, record["id"], external_id, http_status=200)

    async def read_record(
        self, object_type: str, external_id: str, *, ctx: CallContext
    ) -> dict[str, Any] | None:
        """The record by external ID as NetSuite returns it (its `id` as a string); None if
        there is none."""
        path = f"{RECORD_PATH}/{object_type}/eid:{quote(external_id, safe='')}"
        action = f"GET {RECORD_PATH}/{object_type}/eid:{external_id}"
        response = await self._http.send("GET", path, action=action, ctx=ctx)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise classify_response(response, action=action)
        try:
            record = response.json()
            record_id, found_external_id = str(record["id"]), record["externalId"]
        except (ValueError, KeyError, TypeError) as exc:
            raise self._http.protocol_error(response, action, "without a record") from exc
        if found_external_id != external_id:
            raise Terminal(
                f"NetSuite {action} answered with externalId {found_external_id!r}",
                http_status=200,
                classification="protocol",
            )
        return {**record, "id": record_id}

    async def list_records(
        self, object_type: str, *, period: str, ctx: CallContext
    ) -> list[dict[str, Any]]:
        """Every record of a type in a period (YYYY-MM), following pages; for reconciliation."""
        records: list[dict[str, Any]] = []
        action = f"GET {RECORD_PATH}/{object_type}?period={period}"
        while True:
            params: dict[str, str | int] = {"period": period, "limit": 1000, "offset": len(records)}
            response = await self._http.send(
                "GET", f"{RECORD_PATH}/{object_type}", action=action, ctx=ctx, params=params
            )
            if response.status_code != 200:
                raise classify_response(response, action=action)
            page = self._http.json(response, action)
            records.extend(page.get("items", []))
            if not page.get("hasMore") or not page.get("items"):
                return records

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _create(
        self, record_type: str, body: dict[str, Any], external_id: str, ctx: CallContext
    ) -> TargetRecord:
        path = f"{RECORD_PATH}/{record_type}"
        action = f"POST {path}"
        headers = {"Idempotency-Key": ctx.idempotency_key}
        response = await self._http.send(
            "POST", path, action=action, ctx=ctx, json=body, headers=headers
        )
        return self._created(response, record_type, external_id, action)

    @staticmethod
    def _created(
        response: httpx.Response, record_type: str, external_id: str, action: str
    ) -> TargetRecord:
        if response.status_code not in _SUCCESS:
            raise classify_response(response, action=action)
        record_id = _record_id_from_location(response.headers.get("Location"), record_type)
        if record_id is None:
            # The record was probably created: the caller must look it up, not post blind.
            raise Retryable(
                f"NetSuite {action} answered {response.status_code} without a record Location",
                http_status=response.status_code,
                classification="protocol",
            )
        return TargetRecord(
            System.ERP, record_type, record_id, external_id, http_status=response.status_code
        )
