"""NetSuite connector beyond invoices, against the sandbox ERP over real HTTP, through the guard."""

from datetime import date

import pytest

from lineage.enums import System
from orchestrator.client.canonical import Invoice
from orchestrator.connectors.errors import Conflict, Retryable, Terminal
from orchestrator.connectors.netsuite import NetSuiteErp
from orchestrator.connectors.ports import (
    CustomerRecord,
    JournalEntryRecord,
    JournalLine,
    PaymentRecord,
    RevenueScheduleRecord,
)
from tests.orchestrator.connectors.conftest import LOOPBACK, ctx, ledger, set_faults

PAYMENT = PaymentRecord("pay_1", "cus_1", "in_1", 1550, "USD", date(2024, 3, 5))
ENTRY = JournalEntryRecord(
    "je_1",
    "USD",
    date(2024, 3, 31),
    (JournalLine("4000", credit_minor=30000), JournalLine("1100", debit_minor=30000)),
)
SCHEDULE = RevenueScheduleRecord(
    "rs_1", "in_1", "USD", 120000, (("2024-03", 40000), ("2024-04", 40000), ("2024-05", 40000))
)


async def test_each_record_type_posts_and_is_found_by_external_id(sandbox: str) -> None:
    erp = NetSuiteErp(f"{sandbox}/erp", allow=LOOPBACK)
    try:
        customer = await erp.upsert_customer(
            CustomerRecord("cus_1", "Acme", "ap@acme.test", "USD"), ctx=ctx("c")
        )
        posted = [
            await erp.post_payment(PAYMENT, ctx=ctx("p")),
            await erp.post_journal_entry(ENTRY, ctx=ctx("j")),
            await erp.post_revenue_schedule(SCHEDULE, ctx=ctx("r")),
        ]
        found = [
            await erp.find_record(r.object_type, r.external_id, ctx=ctx())
            for r in [customer, *posted]
        ]
        march = await erp.list_records("customerpayment", period="2024-03", ctx=ctx())
    finally:
        await erp.aclose()

    assert [(r.system, r.object_type, r.external_id) for r in posted] == [
        (System.ERP, "customerpayment", "pay_1"),
        (System.ERP, "journalentry", "je_1"),
        (System.ERP, "revenueplan", "rs_1"),
    ]
    assert [f.record_id if f else None for f in found] == [r.record_id for r in [customer, *posted]]
    assert [(m["externalId"], m["payment"]) for m in march] == [("pay_1", 15.5)]
    totals = {(r["type"], r["total"]) for r in ledger(f"{sandbox}/erp")}
    assert totals == {
        ("customer", None),
        ("customerpayment", 15.5),
        ("journalentry", 300),
        ("revenueplan", 1200),
    }


async def test_customer_upsert_is_repeatable_and_other_creates_conflict(sandbox: str) -> None:
    erp = NetSuiteErp(f"{sandbox}/erp", allow=LOOPBACK)
    try:
        first = await erp.upsert_customer(CustomerRecord("cus_1", "Acme"), ctx=ctx("c1"))
        again = await erp.upsert_customer(CustomerRecord("cus_1", "Acme Inc"), ctx=ctx("c2"))
        await erp.post_payment(PAYMENT, ctx=ctx("p1"))
        with pytest.raises(Conflict):
            await erp.post_payment(PAYMENT, ctx=ctx("p2"))
    finally:
        await erp.aclose()

    assert first.record_id == again.record_id


async def test_unbalanced_journal_is_refused_before_sending(sandbox: str) -> None:
    bad = JournalEntryRecord(
        "je_2", "USD", date(2024, 3, 31), (JournalLine("4000", debit_minor=1, credit_minor=1),)
    )
    erp = NetSuiteErp(f"{sandbox}/erp", allow=LOOPBACK)
    try:
        with pytest.raises(Terminal):
            await erp.post_journal_entry(bad, ctx=ctx())
        unbalanced = JournalEntryRecord(
            "je_3",
            "USD",
            date(2024, 3, 31),
            (JournalLine("4000", debit_minor=100), JournalLine("1100", credit_minor=99)),
        )
        with pytest.raises(Terminal) as caught:
            await erp.post_journal_entry(unbalanced, ctx=ctx())
    finally:
        await erp.aclose()

    assert caught.value.http_status == 400
    assert "out of balance" in str(caught.value)


@pytest.mark.parametrize(
    ("spec", "error", "classification", "status"),
    [
        ("erp:503=1", Retryable, "server", 503),
        ("erp:429=1,erp:retry_after=9", Retryable, "rate_limit", 429),
        ("erp:422=1", Terminal, "validation", 422),
        ("erp:outage=1h", Retryable, "server", 503),
    ],
)
async def test_injected_faults_are_classified(
    sandbox: str, spec: str, error: type[Exception], classification: str, status: int
) -> None:
    set_faults(sandbox, spec)
    erp = NetSuiteErp(f"{sandbox}/erp", allow=LOOPBACK)
    try:
        with pytest.raises(error) as caught:
            await erp.post_payment(PAYMENT, ctx=ctx())
    finally:
        await erp.aclose()

    assert (
        getattr(caught.value, "classification", None),
        getattr(caught.value, "http_status", None),
    ) == (classification, status)
    if status == 429:
        assert getattr(caught.value, "retry_after_s", None) == 9


async def test_commit_then_drop_is_retryable_and_lookup_finds_the_record(sandbox: str) -> None:
    set_faults(sandbox, "erp.invoice:drop_after_commit=1")
    invoice = Invoice(invoice_id="in_drop", customer_id="cus_1", amount_minor=1000, currency="USD")
    erp = NetSuiteErp(f"{sandbox}/erp", allow=LOOPBACK)
    try:
        with pytest.raises(Retryable) as caught:
            await erp.post_invoice(invoice, ctx=ctx())
        found = await erp.find_invoice("in_drop", ctx=ctx())
    finally:
        await erp.aclose()

    assert caught.value.classification == "connection"
    assert found is not None
    assert [r["external_id"] for r in ledger(f"{sandbox}/erp")] == ["in_drop"]


async def test_timeout_from_a_hang_is_retryable_and_wrote_nothing(sandbox: str) -> None:
    set_faults(sandbox, "erp.customerpayment:hang=1,erp:hang_s=30")
    erp = NetSuiteErp(f"{sandbox}/erp", allow=LOOPBACK, timeout_s=0.3)
    try:
        with pytest.raises(Retryable) as caught:
            await erp.post_payment(PAYMENT, ctx=ctx())
        set_faults(sandbox, "")
        found = await erp.find_record("customerpayment", "pay_1", ctx=ctx())
    finally:
        await erp.aclose()

    assert caught.value.classification == "timeout"
    assert found is None


async def test_loopback_sandbox_is_refused_without_an_allow_list(sandbox: str) -> None:
    erp = NetSuiteErp(f"{sandbox}/erp", allow=[])
    try:
        with pytest.raises(Terminal) as caught:
            await erp.post_payment(PAYMENT, ctx=ctx())
    finally:
        await erp.aclose()

    assert caught.value.classification == "ssrf"
    assert ledger(f"{sandbox}/erp") == []


async def test_a_customer_is_read_back_with_its_subsidiary_and_entries_carry_theirs(
    sandbox: str,
) -> None:
    erp = NetSuiteErp(f"{sandbox}/erp", allow=LOOPBACK)
    coded = JournalEntryRecord(
        "je_coded", "EUR", date(2024, 3, 31), ENTRY.lines, memo="proration", subsidiary="2"
    )
    try:
        await erp.upsert_customer(
            CustomerRecord("cus_eu", "Acme GmbH", currency="EUR", subsidiary="2"), ctx=ctx("c")
        )
        customer = await erp.read_record("customer", "cus_eu", ctx=ctx())
        missing = await erp.read_record("customer", "cus_nobody", ctx=ctx())
        await erp.post_journal_entry(coded, ctx=ctx("j"))
        entry = await erp.read_record("journalentry", "je_coded", ctx=ctx())
    finally:
        await erp.aclose()

    assert customer is not None
    assert (customer["subsidiary"], customer["currency"]) == ({"id": "2"}, {"refName": "EUR"})
    assert isinstance(customer["id"], str)
    assert missing is None
    assert entry is not None
    assert (entry["subsidiary"], entry["memo"]) == ({"id": "2"}, "proration")
