"""Snapshots over HTTP: billing (Stripe's list API), the ERP (NetSuite REST lists) and the CRM
(HubSpot's CRM v3 search).

Each speaks the shapes the sandbox simulates; a system without a URL is not snapshotted, so
the kinds that need it are not evaluated (and never auto-resolve what it showed earlier).
"""

from collections.abc import AsyncIterator
from typing import Any

import httpx

from reconciliation.http_billing import BillingReader
from reconciliation.http_crm import CrmReader
from reconciliation.http_pages import PageReader, to_minor
from reconciliation.sources import Snapshot, from_rows, window

__all__ = ["HttpSource", "to_minor"]

_ERP_STATUS = {"Open": "open", "Paid In Full": "paid", "Pending Approval": "pending_approval"}


def _erp_status(record: dict[str, Any]) -> str:
    name = str((record.get("status") or {}).get("refName", ""))
    return _ERP_STATUS.get(name, name.strip().lower().replace(" ", "_") or "unknown")


class HttpSource:
    """Billing invoices, payments, credit notes and subscriptions; ERP invoices, payments,
    journal entries and revenue plans; CRM deal amounts."""

    name = "http"

    def __init__(
        self,
        *,
        billing_url: str | None,
        erp_url: str | None,
        client: httpx.AsyncClient,
        crm_url: str | None = None,
        crm_token: str | None = None,
    ) -> None:
        self._billing = BillingReader(billing_url, PageReader(client)) if billing_url else None
        self._erp_url = erp_url.rstrip("/") if erp_url else None
        self._erp = PageReader(client)
        self._crm = CrmReader(crm_url, PageReader(client, token=crm_token)) if crm_url else None

    async def _erp_records(self, record_type: str, period: str) -> AsyncIterator[dict[str, Any]]:
        offset = 0
        while True:
            page = await self._erp.get(
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

    async def fetch(self, period: str) -> Snapshot:
        snapshot: Snapshot = {}
        if self._erp_url:
            snapshot.update(await self._erp_tables(period))
        if self._billing:
            snapshot.update(await self._billing.fetch(period))
        if self._crm:
            snapshot.update(await self._crm.fetch())
        return snapshot
