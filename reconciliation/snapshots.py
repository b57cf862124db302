"""The snapshot contract: the tables the engine reads, their columns and DuckDB types.

Sources (HTTP, lineage, files) normalize whatever their system speaks into these tables, so
the rules never see a vendor's shape. Amounts are integers in minor units of `currency`
(upper-case ISO 4217); periods are YYYY-MM; statuses are lower-case tokens.
"""

from enum import StrEnum
from typing import Final


class Kind(StrEnum):
    MISSING_IN_ERP = "missing_in_erp"
    ORPHAN_IN_ERP = "orphan_in_erp"
    AMOUNT_MISMATCH = "amount_mismatch"
    CURRENCY_MISMATCH = "currency_mismatch"
    STATUS_MISMATCH = "status_mismatch"
    DUPLICATE_POSTING = "duplicate_posting"
    POSTED_BUT_MISSING = "posted_but_missing"
    CRM_CONTRACT_VALUE_MISMATCH = "crm_contract_value_mismatch"
    REVENUE_SCHEDULE_MISMATCH = "revenue_schedule_mismatch"


_ID: Final = "VARCHAR"
_AMOUNT: Final = "BIGINT"

# table -> column -> DuckDB type. Every column is required in an input (nulls are allowed).
TABLES: Final[dict[str, dict[str, str]]] = {
    # status: draft | open | paid | void | uncollectible (Stripe's invoice statuses)
    "billing_invoices": {
        "invoice_id": _ID,
        "customer_id": _ID,
        "subscription_id": _ID,
        "amount_minor": _AMOUNT,
        "currency": _ID,
        "status": _ID,
        "period": _ID,
    },
    "billing_credit_notes": {
        "credit_note_id": _ID,
        "invoice_id": _ID,
        "amount_minor": _AMOUNT,
        "currency": _ID,
        "period": _ID,
    },
    "billing_payments": {
        "payment_id": _ID,
        "invoice_id": _ID,
        "amount_minor": _AMOUNT,
        "currency": _ID,
        "status": _ID,
        "period": _ID,
    },
    # contract_value_minor: what the subscription is worth per the terms CRM deals record.
    "billing_subscriptions": {
        "subscription_id": _ID,
        "customer_id": _ID,
        "contract_value_minor": _AMOUNT,
        "currency": _ID,
        "status": _ID,
    },
    "crm_deals": {
        "deal_id": _ID,
        "subscription_id": _ID,
        "amount_minor": _AMOUNT,
        "currency": _ID,
    },
    # status: open | paid | pending_approval | voided (NetSuite's refName, normalized)
    "erp_invoices": {
        "record_id": _ID,
        "external_id": _ID,
        "amount_minor": _AMOUNT,
        "currency": _ID,
        "status": _ID,
        "period": _ID,
    },
    # One row per applied line: a payment applied to two invoices is two rows.
    "erp_payments": {
        "record_id": _ID,
        "external_id": _ID,
        "invoice_external_id": _ID,
        "amount_minor": _AMOUNT,
        "currency": _ID,
        "period": _ID,
    },
    "erp_journal_entries": {
        "record_id": _ID,
        "external_id": _ID,
        "amount_minor": _AMOUNT,
        "currency": _ID,
        "period": _ID,
    },
    "erp_revenue_schedules": {
        "record_id": _ID,
        "external_id": _ID,
        "invoice_external_id": _ID,
        "amount_minor": _AMOUNT,
        "currency": _ID,
        "period": _ID,
    },
    # What Concord believes it posted: one row per transaction (and per ERP record it holds).
    "lineage_postings": {
        "correlation_id": _ID,
        "invoice_id": _ID,
        "erp_record_id": _ID,
        "amount_minor": _AMOUNT,
        "currency": _ID,
        "state": _ID,
        "period": _ID,
    },
}

# A kind is evaluated only when every table it needs was supplied; an absent table must not
# auto-resolve the mismatches it found in earlier runs.
REQUIRES: Final[dict[Kind, frozenset[str]]] = {
    Kind.MISSING_IN_ERP: frozenset({"billing_invoices", "erp_invoices"}),
    Kind.ORPHAN_IN_ERP: frozenset({"billing_invoices", "erp_invoices"}),
    Kind.AMOUNT_MISMATCH: frozenset({"billing_invoices", "erp_invoices"}),
    Kind.CURRENCY_MISMATCH: frozenset({"billing_invoices", "erp_invoices"}),
    Kind.STATUS_MISMATCH: frozenset({"billing_invoices", "erp_invoices"}),
    Kind.DUPLICATE_POSTING: frozenset({"erp_invoices"}),
    Kind.POSTED_BUT_MISSING: frozenset({"lineage_postings", "erp_invoices"}),
    Kind.CRM_CONTRACT_VALUE_MISMATCH: frozenset({"crm_deals", "billing_subscriptions"}),
    Kind.REVENUE_SCHEDULE_MISMATCH: frozenset({"erp_revenue_schedules", "billing_invoices"}),
}

# The columns of a finding, as the engine returns them (an Arrow table in this order).
FINDING_COLUMNS: Final = (
    "fingerprint",
    "kind",
    "match_key",
    "period",
    "system",
    "source_system",
    "source_id",
    "source_amount_minor",
    "source_currency",
    "source_status",
    "target_system",
    "target_id",
    "target_amount_minor",
    "target_currency",
    "target_status",
    "amount_at_risk_minor",
    "currency",
    "correlation_ids",
    "refs",
)
