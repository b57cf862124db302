"""A small, internally consistent set of snapshots (the clean world) and ways to disturb it.

Every test plants one difference into a copy of the clean world and checks that exactly that
difference comes back. Rows are plain dicts so a test states its change in one line.
"""

import copy
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from reconciliation.snapshots import TABLES

PERIOD = "2026-11"
Row = dict[str, Any]


def _invoice(invoice_id: str, amount: int, currency: str, status: str, period: str = PERIOD) -> Row:
    return {
        "invoice_id": invoice_id,
        "customer_id": "cus_1",
        "subscription_id": "sub_1",
        "amount_minor": amount,
        "currency": currency,
        "status": status,
        "period": period,
    }


@dataclass
class World:
    tables: dict[str, list[Row]] = field(default_factory=dict)

    def arrow(self) -> dict[str, Any]:
        """Each table as Arrow with the contract's columns, in the contract's order."""
        out = {}
        for name, rows in self.tables.items():
            columns = TABLES[name]
            types = {"VARCHAR": pa.string(), "BIGINT": pa.int64()}
            schema = pa.schema([(c, types[t]) for c, t in columns.items()])
            out[name] = pa.Table.from_pylist(rows, schema=schema)
        return out

    def row(self, table: str, **match: Any) -> Row:
        [found] = [r for r in self.tables[table] if all(r[k] == v for k, v in match.items())]
        return found

    def drop(self, table: str, **match: Any) -> None:
        self.tables[table].remove(self.row(table, **match))

    def copy(self) -> "World":
        return World(copy.deepcopy(self.tables))


def clean_world() -> World:
    """Billing, ERP, CRM and lineage in full agreement, in USD, JPY (0 decimals) and KWD (3)."""
    invoices = [
        _invoice("in_usd_open", 10_000, "USD", "open"),
        _invoice("in_usd_paid", 2_550, "USD", "paid"),
        _invoice("in_jpy_open", 1_500, "JPY", "open"),
        _invoice("in_jpy_paid", 98_000, "JPY", "paid"),
        _invoice("in_kwd_open", 12_345, "KWD", "open"),
        _invoice("in_usd_void", 700, "USD", "void"),
        # Drafts are never posted; nothing may be expected of them.
        _invoice("in_usd_draft", 900, "USD", "draft"),
        # Last month's invoice: in the snapshot to match across the month end, not reported.
        _invoice("in_usd_prev", 5_000, "USD", "open", period="2026-10"),
    ]
    posted = [i for i in invoices if i["status"] != "draft"]
    erp_status = {"open": "open", "paid": "open", "void": "voided"}
    erp = [
        {
            "record_id": str(100 + n),
            "external_id": i["invoice_id"],
            "amount_minor": i["amount_minor"],
            "currency": i["currency"],
            # Paid invoices stay Open in NetSuite; the applied payments below settle them.
            "status": erp_status[i["status"]],
            "period": i["period"],
        }
        for n, i in enumerate(posted)
    ]
    payments = [
        {
            "record_id": f"pay_{e['record_id']}",
            "external_id": f"py_{e['external_id']}",
            "invoice_external_id": e["external_id"],
            "amount_minor": e["amount_minor"],
            "currency": e["currency"],
            "period": e["period"],
        }
        for e, i in zip(erp, posted, strict=True)
        if i["status"] == "paid"
    ]
    lineage = [
        {
            "correlation_id": f"cid-{e['external_id']}",
            "invoice_id": e["external_id"],
            "erp_record_id": e["record_id"],
            "amount_minor": e["amount_minor"],
            "currency": e["currency"],
            "state": "posted",
            "period": e["period"],
        }
        for e in erp
    ]
    schedules = [
        {
            "record_id": f"rev_{e['record_id']}_{half}",
            "external_id": f"rev_{e['external_id']}_{half}",
            "invoice_external_id": e["external_id"],
            # Split in two so the rule has to add the lines up (an odd amount splits unevenly).
            "amount_minor": e["amount_minor"] // 2 + (e["amount_minor"] % 2 if half else 0),
            "currency": e["currency"],
            "period": e["period"],
        }
        for e in erp[:3]
        for half in (0, 1)
    ]
    subscriptions = [
        {
            "subscription_id": sid,
            "customer_id": "cus_1",
            "contract_value_minor": value,
            "currency": currency,
            "status": "active",
        }
        for sid, value, currency in (("sub_usd", 120_000, "USD"), ("sub_jpy", 1_176_000, "JPY"))
    ]
    deals = [
        {
            "deal_id": f"deal_{s['subscription_id']}",
            "subscription_id": s["subscription_id"],
            "amount_minor": s["contract_value_minor"],
            "currency": s["currency"],
        }
        for s in subscriptions
    ]
    journal = [
        {
            "record_id": "je_1",
            "external_id": "je_in_usd_open",
            "amount_minor": 10_000,
            "currency": "USD",
            "period": PERIOD,
        }
    ]
    return World(
        {
            "billing_invoices": invoices,
            "billing_subscriptions": subscriptions,
            "billing_credit_notes": [],
            "billing_payments": [],
            "crm_deals": deals,
            "erp_invoices": erp,
            "erp_payments": payments,
            "erp_journal_entries": journal,
            "erp_revenue_schedules": schedules,
            "lineage_postings": lineage,
        }
    )
