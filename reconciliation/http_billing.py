"""Billing over Stripe's list API: invoices, charges (payments), credit notes, subscriptions.

Invoices, charges and credit notes are listed by creation time over the period and its
neighbours; subscriptions are not periodic, so every one is read (status=all), with the
contract value annualised exactly as Concord's workflows send it to the CRM.
"""

from datetime import UTC, datetime
from typing import Any

from reconciliation.http_pages import PageReader
from reconciliation.sources import Snapshot, from_rows, window

# Months per price interval, as orchestrator/client/canonical.py annualises subscriptions.
_MONTHS = {"day": 1 / 30, "week": 12 / 52, "month": 1, "year": 12}


def _month(ts: int | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m") if ts else None


def _ref(value: Any) -> str | None:
    return value.get("id") if isinstance(value, dict) else value


def _created_range(period: str) -> dict[str, int]:
    first, _, last = window(period)
    start = datetime.fromisoformat(f"{first}-01T00:00:00+00:00")
    end_month = datetime.fromisoformat(f"{last}-01T00:00:00+00:00")
    end = end_month.replace(
        year=end_month.year + (end_month.month == 12), month=end_month.month % 12 + 1
    )
    return {"created[gte]": int(start.timestamp()), "created[lt]": int(end.timestamp())}


def contract_value_minor(subscription: dict[str, Any]) -> int:
    """The annual value of a subscription's items in minor units."""
    total = 0
    for item in (subscription.get("items") or {}).get("data", []):
        price = item.get("price") or item.get("plan") or {}
        recurring = price.get("recurring") or price
        months = _MONTHS.get(str(recurring.get("interval")), 1) * (
            recurring.get("interval_count") or 1
        )
        unit = price.get("unit_amount", price.get("amount")) or 0
        total += round(unit * item.get("quantity", 1) * 12 / months)
    return total


class BillingReader:
    def __init__(self, base_url: str, pages: PageReader) -> None:
        self._base = base_url.rstrip("/")
        self._pages = pages

    async def _list(self, resource: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Every object of a Stripe list, following starting_after."""
        params = {"limit": 100, **params}
        found: list[dict[str, Any]] = []
        while True:
            page = await self._pages.get(f"{self._base}/v1/{resource}", params)
            found.extend(page["data"])
            if not page.get("has_more") or not page["data"]:
                return found
            params["starting_after"] = page["data"][-1]["id"]

    async def invoices(self, period: str) -> Any:
        rows = []
        for inv in await self._list("invoices", _created_range(period)):
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
        return from_rows("billing_invoices", rows)

    async def payments(self, period: str) -> Any:
        rows = []
        for charge in await self._list("charges", _created_range(period)):
            # `invoice` on older API versions; the sandbox also keeps it in metadata.
            invoice = _ref(charge.get("invoice")) or (charge.get("metadata") or {}).get("invoice")
            rows.append(
                (
                    charge["id"],
                    invoice,
                    charge.get("amount_captured", charge["amount"])
                    if charge["status"] == "succeeded"
                    else charge["amount"],
                    str(charge["currency"]).upper(),
                    charge["status"],
                    _month(charge.get("created")),
                )
            )
        return from_rows("billing_payments", rows)

    async def credit_notes(self, period: str) -> Any:
        rows = [
            (
                note["id"],
                _ref(note.get("invoice")),
                note["total"],
                str(note["currency"]).upper(),
                _month(note.get("effective_at") or note.get("created")),
            )
            for note in await self._list("credit_notes", _created_range(period))
            # A voided credit note credits nothing.
            if note.get("status") != "void"
        ]
        return from_rows("billing_credit_notes", rows)

    async def subscriptions(self) -> Any:
        rows = [
            (
                sub["id"],
                _ref(sub.get("customer")),
                contract_value_minor(sub),
                str(sub["currency"]).upper(),
                sub["status"],
            )
            for sub in await self._list("subscriptions", {"status": "all"})
        ]
        return from_rows("billing_subscriptions", rows)

    async def fetch(self, period: str) -> Snapshot:
        return {
            "billing_invoices": await self.invoices(period),
            "billing_payments": await self.payments(period),
            "billing_credit_notes": await self.credit_notes(period),
            "billing_subscriptions": await self.subscriptions(),
        }
