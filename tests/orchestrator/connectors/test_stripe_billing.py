"""Stripe billing connector against the billing sandbox over real HTTP, through the guard."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from lineage.enums import System
from orchestrator.connectors.errors import Retryable, Terminal
from orchestrator.connectors.ports import CustomerRecord
from orchestrator.connectors.stripe_billing import StripeBilling
from sandbox.stripe_form import encode
from tests.orchestrator.connectors.conftest import LOOPBACK, ctx, set_faults

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def seed_billing(url: str, customers: int) -> list[str]:
    """Customers on a monthly plan, each with a paid first invoice; returns the invoice IDs."""
    with httpx.Client(base_url=url, headers=FORM) as client:
        product = client.post("/v1/products", content=encode({"name": "Pro"})).json()
        price = client.post(
            "/v1/prices",
            content=encode(
                {
                    "product": product["id"],
                    "unit_amount": 1999,
                    "currency": "usd",
                    "recurring": {"interval": "month"},
                }
            ),
        ).json()
        invoices = []
        for n in range(customers):
            customer = client.post(
                "/v1/customers", content=encode({"metadata": {"external_id": f"acct-{n}"}})
            ).json()
            sub = client.post(
                "/v1/subscriptions",
                content=encode(
                    {
                        "customer": customer["id"],
                        "items": [{"price": price["id"], "quantity": n + 1}],
                    }
                ),
            ).json()
            invoices.append(sub["latest_invoice"])
    return invoices


async def test_reads_invoices_and_customers_as_canonical(sandbox: str) -> None:
    invoice_ids = seed_billing(f"{sandbox}/billing", 3)
    billing = StripeBilling(f"{sandbox}/billing", api_key="sk_test_x", allow=LOOPBACK)
    now = datetime.now(UTC)
    try:
        invoice = await billing.get_invoice(invoice_ids[1], ctx=ctx())
        listed = await billing.list_invoices(
            since=now - timedelta(hours=1), until=now + timedelta(hours=1), ctx=ctx()
        )
        missing = await billing.get_invoice("in_missing", ctx=ctx())
        customer = await billing.find_customer("acct-2", ctx=ctx())
        nobody = await billing.find_customer("acct-9", ctx=ctx())
    finally:
        await billing.aclose()

    assert invoice is not None
    assert (invoice.amount_minor, invoice.currency) == (3998, "USD")
    assert invoice.subscription_id is not None
    assert invoice.subscription_id.startswith("sub_")
    assert [line.quantity for line in invoice.lines] == [2]
    assert invoice.period_start is not None
    assert invoice.period_end is not None
    assert sorted(i.invoice_id for i in listed) == sorted(invoice_ids)
    assert missing is None
    assert customer is not None
    assert (customer.system, customer.external_id) == (
        System.BILLING,
        "acct-2",
    )
    assert nobody is None


async def test_lists_follow_pages(sandbox: str) -> None:
    invoice_ids = seed_billing(f"{sandbox}/billing", 5)
    billing = StripeBilling(f"{sandbox}/billing", allow=LOOPBACK, page_size=2)
    now = datetime.now(UTC)
    try:
        listed = await billing.list_invoices(
            since=now - timedelta(days=1), until=now + timedelta(days=1), ctx=ctx()
        )
        later = await billing.list_invoices(
            since=now + timedelta(days=1), until=now + timedelta(days=2), ctx=ctx()
        )
    finally:
        await billing.aclose()

    assert sorted(i.invoice_id for i in listed) == sorted(invoice_ids)
    assert len(listed) == 5
    assert later == []


@pytest.mark.parametrize(
    ("spec", "error", "classification"),
    [
        ("billing:500=1", Retryable, "server"),
        ("billing:429=1", Retryable, "rate_limit"),
    ],
)
async def test_failures_are_classified(
    sandbox: str, spec: str, error: type[Exception], classification: str
) -> None:
    set_faults(sandbox, spec)
    billing = StripeBilling(f"{sandbox}/billing", allow=LOOPBACK)
    try:
        with pytest.raises(error) as caught:
            await billing.get_invoice("in_1", ctx=ctx())
    finally:
        await billing.aclose()

    assert getattr(caught.value, "classification", None) == classification
    assert "Stripe GET /v1/invoices/in_1 answered" in str(caught.value)


async def test_a_refused_write_is_terminal(sandbox: str) -> None:
    # The sandbox refuses writes only with an injected 422, as Stripe's validation errors do.
    set_faults(sandbox, "billing:422=1")
    billing = StripeBilling(f"{sandbox}/billing", allow=LOOPBACK)
    try:
        with pytest.raises(Terminal) as caught:
            await billing.create_customer(CustomerRecord("cus_ext_1", "Acme"), ctx=ctx())
    finally:
        await billing.aclose()

    assert caught.value.classification == "validation"
    assert "Stripe POST /v1/customers answered" in str(caught.value)
