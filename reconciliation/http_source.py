"""Snapshots over HTTP from billing (Stripe's list API) and the ERP (NetSuite REST lists).

Both speak the shapes the sandbox simulates. Amounts arrive in major units from NetSuite and
are converted exactly to minor units; a sub-minor amount is a SourceError, never rounded.
"""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from reconciliation.errors import SourceError
from reconciliation.sources import Snapshot, from_rows, window

# ISO 4217 exponents other than 2 (the ERP and billing agree on this table).
# fmt: off
_ZERO_DECIMAL = frozenset({
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG",
    "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF",
})
# fmt: on
_THREE_DECIMAL = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})
_ERP_STATUS = {"Open": "open", "Paid In Full": "paid", "Pending Approval": "pending_approval"}


def to_minor(amount: Any, currency: str) -> int:
    digits = 0 if currency in _ZERO_DECIMAL else 3 if currency in _THREE_DECIMAL else 2
    try:
        # repr() keeps 10.05 as 10.05 rather than its binary neighbour.
        minor = Decimal(repr(amount) if isinstance(amount, float) else str(amount)).scaleb(digits)
    except InvalidOperation as exc:
        raise SourceError(f"{amount!r} is not an amount") from exc
    if minor != minor.to_integral_value():
        raise SourceError(f"{amount} {currency} is finer than the currency's minor unit")
    return int(minor)


def _erp_status(record: dict[str, Any]) -> str:
    name = str((record.get("status") or {}).get("refName", ""))
    return _ERP_STATUS.get(name, name.strip().lower().replace(" ", "_") or "unknown")


def _month(ts: int | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m") if ts else None


def _ref(value: Any) -> str | None:
    return value.get("id") if isinstance(value, dict) else value


_ATTEMPTS = 5
_TRANSIENT = {429, 500, 502, 503, 504}


def _backoff_s(attempt: int, retry_after: str | None) -> float:
    # A snapshot is read once per run: waiting a little beats failing the whole run.
    try:
        hinted = float(retry_after) if retry_after else 0.0
    except ValueError:
        hinted = 0.0
    return min(10.0, max(hinted, 0.2 * 2.0 ** (attempt - 1)))


class HttpSource:
    """Billing invoices and ERP invoices, payments, journal entries and revenue plans."""

    name = "http"

    def __init__(
        self,
        *,
        billing_url: str | None,
        erp_url: str | None,
        client: httpx.AsyncClient,
    ) -> None:
        self._billing = billing_url.rstrip("/") if billing_url else None
        self._erp_url = erp_url.rstrip("/") if erp_url else None
        self._client = client

    async def _get(self, url: str, params: dict[str, Any]) -> dict[str, Any]:
        """GET a page; rate limits, 5xx and dropped connections are retried a few times."""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                response = await self._client.get(url, params=params)
            except httpx.HTTPError as exc:
                if attempt == _ATTEMPTS:
                    raise SourceError(f"GET {url} failed: {exc!r}") from exc
                await asyncio.sleep(_backoff_s(attempt, None))
                continue
            if response.status_code == 200:
                body: dict[str, Any] = response.json()
                return body
            if response.status_code not in _TRANSIENT or attempt == _ATTEMPTS:
                raise SourceError(
                    f"GET {url} answered {response.status_code}: {response.text[:300]}"
                )
            await asyncio.sleep(_backoff_s(attempt, response.headers.get("retry-after")))
        raise AssertionError("unreachable")

    async def _erp_records(self, record_type: str, period: str) -> AsyncIterator[dict[str, Any]]:
        offset = 0
        while True:
            page = await self._get(
                f"{self._erp_url}/record/v1/{record_type}",
                {"period": period, "limit": 1000, "offset": offset},
            )
            for item in page["items"]:
                yield item
            if not page.get("hasMore"):
                return
            offset += len(page["items"])

    async def _erp_tables(self, period: str) -> Snapshot:
        invoices, payments, journal, plans = [], [], [], []
        for month in window(period):
            async for r in self._erp_records("invoice", month):
                cur = r["currency"]["refName"]
                invoices.append(
                    (
                        str(r["id"]),
                        r.get("externalId"),
                        to_minor(r["total"], cur),
                        cur,
                        _erp_status(r),
                        str(r["tranDate"])[:7],
                    )
                )
            async for r in self._erp_records("customerpayment", month):
                cur = r["currency"]["refName"]
                for line in r["apply"]["items"]:
                    payments.append(
                        (
                            str(r["id"]),
                            r.get("externalId"),
                            line["doc"]["externalId"],
                            to_minor(line["amount"], cur),
                            cur,
                            str(r["tranDate"])[:7],
                        )
                    )
            async for r in self._erp_records("journalentry", month):
                cur = r["currency"]["refName"]
                journal.append(
                    (str(r["id"]), r.get("externalId"), to_minor(r["total"], cur), cur, month)
                )
            async for r in self._erp_records("revenueplan", month):
                cur = r["currency"]["refName"]
                plans.append(
                    (
                        str(r["id"]),
                        r.get("externalId"),
                        r["createdFrom"]["externalId"],
                        to_minor(r["amount"], cur),
                        cur,
                        month,
                    )
                )
        return {
            "erp_invoices": from_rows("erp_invoices", invoices),
            "erp_payments": from_rows("erp_payments", payments),
            "erp_journal_entries": from_rows("erp_journal_entries", journal),
            "erp_revenue_schedules": from_rows("erp_revenue_schedules", plans),
        }

    async def _billing_invoices(self, period: str) -> Snapshot:
        first, _, last = window(period)
        start = int(datetime.fromisoformat(f"{first}-01T00:00:00+00:00").timestamp())
        end_month = datetime.fromisoformat(f"{last}-01T00:00:00+00:00")
        end = end_month.replace(
            year=end_month.year + (end_month.month == 12), month=end_month.month % 12 + 1
        )
        params: dict[str, Any] = {
            "limit": 100,
            "created[gte]": start,
            "created[lt]": int(end.timestamp()),
        }
        rows = []
        while True:
            page = await self._get(f"{self._billing}/v1/invoices", params)
            for inv in page["data"]:
                subscription = inv.get("subscription") or (
                    (inv.get("parent") or {}).get("subscription_details") or {}
                ).get("subscription")
                rows.append(
                    (
                        inv["id"],
                        _ref(inv.get("customer")),
                        _ref(subscription),
                        inv.get("total", inv.get("amount_due")),
                        str(inv["currency"]).upper(),
                        inv["status"],
                        # Concord books an invoice in the month its billing period starts.
                        _month(inv.get("period_start")) or _month(inv.get("created")),
                    )
                )
            if not page.get("has_more") or not page["data"]:
                break
            params["starting_after"] = page["data"][-1]["id"]
        return {"billing_invoices": from_rows("billing_invoices", rows)}

    async def fetch(self, period: str) -> Snapshot:
        snapshot: Snapshot = {}
        if self._erp_url:
            snapshot.update(await self._erp_tables(period))
        if self._billing:
            snapshot.update(await self._billing_invoices(period))
        return snapshot
