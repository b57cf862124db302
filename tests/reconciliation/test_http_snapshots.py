"""Billing payments, credit notes and subscriptions, and CRM deal amounts, over HTTP from the
sandbox; the CRM and credit-note comparisons found end to end through a run."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.models import Mismatch
from reconciliation.http_source import HttpSource
from reconciliation.runner import RunOptions, load_run, run_reconciliation
from reconciliation.service import reconcile_period
from reconciliation.settings import ReconciliationSettings
from sandbox.stripe_form import encode

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _post(billing: str, path: str, **params: Any) -> dict[str, Any]:
    response = httpx.post(f"{billing}{path}", content=encode(params), headers=FORM)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _subscription(
    billing: str, unit_amount: int, *, quantity: int = 1, declined: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A monthly subscription; a declined card leaves its first invoice open."""
    product = _post(billing, "/v1/products", name=f"Plan {unit_amount}")
    price = _post(
        billing,
        "/v1/prices",
        product=product["id"],
        unit_amount=unit_amount,
        currency="usd",
        recurring={"interval": "month"},
    )
    settings = {"default_payment_method": "pm_card_chargeDeclined"} if declined else {}
    customer = _post(billing, "/v1/customers", email="ap@acme.test", invoice_settings=settings)
    sub = _post(
        billing,
        "/v1/subscriptions",
        customer=customer["id"],
        items=[{"price": price["id"], "quantity": quantity}],
    )
    return sub, httpx.get(f"{billing}/v1/invoices/{sub['latest_invoice']}").json()


def _deal(sandbox_url: str, subscription_id: str | None, amount: str) -> str:
    props = {"dealname": "Deal", "amount": amount, "deal_currency_code": "USD"}
    if subscription_id is not None:
        props["external_id"] = subscription_id
    response = httpx.post(f"{sandbox_url}/crm/crm/v3/objects/deals", json={"properties": props})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _period() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


async def _snapshot(**urls: str | None) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        source = HttpSource(
            billing_url=urls.get("billing_url"),
            erp_url=urls.get("erp_url"),
            crm_url=urls.get("crm_url"),
            crm_token="pat-test",
            client=client,
        )
        return await source.fetch(_period())


async def test_billing_payments_credit_notes_and_subscriptions_become_contract_tables(
    sandbox_url: str,
) -> None:
    billing = f"{sandbox_url}/billing"
    paid_sub, paid = _subscription(billing, 5_000, quantity=2)
    open_sub, unpaid = _subscription(billing, 3_000, declined=True)
    assert (paid["status"], unpaid["status"]) == ("paid", "open")
    # After payment, a credit must say where the money goes; before it, it lowers what is due.
    _post(billing, "/v1/credit_notes", invoice=paid["id"], amount=1_000, out_of_band_amount=1_000)
    full = _post(billing, "/v1/credit_notes", invoice=unpaid["id"], amount=3_000)
    assert (full["type"], full["pre_payment_amount"]) == ("pre_payment", 3_000)
    credited = httpx.get(f"{billing}/v1/invoices/{unpaid['id']}").json()
    assert (credited["status"], credited["amount_paid"], credited["amount_remaining"]) == (
        "paid",
        0,
        0,
    )

    snapshot = await _snapshot(billing_url=billing)

    assert set(snapshot) == {
        "billing_invoices",
        "billing_payments",
        "billing_credit_notes",
        "billing_subscriptions",
    }
    payments = {p["invoice_id"]: p for p in snapshot["billing_payments"].to_pylist()}
    assert (payments[paid["id"]]["amount_minor"], payments[paid["id"]]["status"]) == (
        10_000,
        "succeeded",
    )
    assert payments[unpaid["id"]]["status"] == "failed"
    assert payments[paid["id"]]["currency"] == "USD"
    notes = sorted(
        (n["invoice_id"], n["amount_minor"], n["currency"])
        for n in snapshot["billing_credit_notes"].to_pylist()
    )
    assert notes == sorted([(paid["id"], 1_000, "USD"), (unpaid["id"], 3_000, "USD")])
    subscriptions = {s["subscription_id"]: s for s in snapshot["billing_subscriptions"].to_pylist()}
    # Annualised, as Concord sends it to the CRM: 2 x 50.00 a month is 1,200.00 a year.
    assert subscriptions[paid_sub["id"]]["contract_value_minor"] == 120_000
    assert subscriptions[open_sub["id"]]["contract_value_minor"] == 36_000


def test_the_sandbox_refuses_to_credit_more_than_the_invoice(sandbox_url: str) -> None:
    billing = f"{sandbox_url}/billing"
    _sub, invoice = _subscription(billing, 2_000, declined=True)
    _post(billing, "/v1/credit_notes", invoice=invoice["id"], amount=1_500)

    too_much = httpx.post(
        f"{billing}/v1/credit_notes",
        content=encode({"invoice": invoice["id"], "amount": 600}),
        headers=FORM,
    )
    unsettled = httpx.post(
        f"{billing}/v1/credit_notes",
        content=encode({"invoice": _subscription(billing, 900)[1]["id"], "amount": 900}),
        headers=FORM,
    )

    assert too_much.status_code == 400
    assert "exceeds" in too_much.json()["error"]["message"]
    # A paid invoice's credit must be refunded, credited or settled out of band.
    assert unsettled.status_code == 400
    assert unsettled.json()["error"]["param"] == "out_of_band_amount"
    listed = httpx.get(f"{billing}/v1/credit_notes", params={"invoice": invoice["id"]}).json()
    assert [n["amount"] for n in listed["data"]] == [1_500]


async def test_crm_deals_with_a_subscription_become_contract_tables(sandbox_url: str) -> None:
    deal = _deal(sandbox_url, "sub_a", "1200.50")
    _deal(sandbox_url, None, "99.00")

    snapshot = await _snapshot(crm_url=f"{sandbox_url}/crm")

    assert snapshot["crm_deals"].to_pylist() == [
        {"deal_id": deal, "subscription_id": "sub_a", "amount_minor": 120_050, "currency": "USD"}
    ]


async def test_crm_contract_value_mismatch_is_found_over_http(
    sandbox_url: str,
    database_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    billing = f"{sandbox_url}/billing"
    agreed, _ = _subscription(billing, 5_000)
    disputed, _ = _subscription(billing, 4_000)
    _deal(sandbox_url, agreed["id"], "600.00")
    off = _deal(sandbox_url, disputed["id"], "450.00")
    # Configured as the API, `concord reconcile` and the cron configure it.
    settings = ReconciliationSettings(
        database_url=database_url,
        reconciliation_dir=tmp_path,
        reconciliation_billing_url=billing,
        reconciliation_crm_url=f"{sandbox_url}/crm",
        reconciliation_crm_token="pat-test",
    )

    run_id = await reconcile_period(sessionmaker, settings, period=_period(), trigger="test")

    run = await load_run(sessionmaker, run_id)
    assert run.kinds_evaluated is not None
    assert "crm_contract_value_mismatch" in run.kinds_evaluated
    assert (tmp_path / str(run_id) / "crm_deals.parquet").exists()
    async with sessionmaker() as session:
        [mismatch] = await session.scalars(select(Mismatch))
    assert (mismatch.kind, mismatch.source_id, mismatch.target_id) == (
        "crm_contract_value_mismatch",
        disputed["id"],
        off,
    )
    # 40.00 a month is 480.00 a year; the deal says 450.00.
    assert (mismatch.source_amount_minor, mismatch.target_amount_minor) == (48_000, 45_000)
    assert (mismatch.amount_at_risk_minor, mismatch.currency) == (3_000, "USD")


def _erp_invoice(sandbox_url: str, invoice: dict[str, Any]) -> None:
    booked = httpx.put(
        f"{sandbox_url}/erp/record/v1/invoice/eid:{invoice['id']}",
        json={
            "entity": {"externalId": invoice["customer"]},
            "currency": {"refName": "USD"},
            "tranDate": datetime.fromtimestamp(invoice["period_start"], UTC).date().isoformat(),
            "item": {"items": [{"amount": invoice["total"] / 100}]},
        },
    )
    assert booked.status_code == 204, booked.text


@pytest.mark.parametrize("credit", [3_000, 1_000])
async def test_an_invoice_credited_in_full_but_open_in_the_erp_is_a_status_mismatch(
    sandbox_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
    credit: int,
) -> None:
    billing = f"{sandbox_url}/billing"
    _sub, invoice = _subscription(billing, 3_000, declined=True)
    _erp_invoice(sandbox_url, invoice)
    _post(billing, "/v1/credit_notes", invoice=invoice["id"], amount=credit)

    async with httpx.AsyncClient() as http:
        await run_reconciliation(
            sessionmaker,
            period=_period(),
            sources=[HttpSource(billing_url=billing, erp_url=f"{sandbox_url}/erp", client=http)],
            options=RunOptions(runs_dir=tmp_path),
            trigger="test",
        )

    async with sessionmaker() as session:
        found = [
            (m.kind, m.source_id, m.source_status, m.target_status)
            for m in await session.scalars(select(Mismatch))
        ]
    if credit == 3_000:
        assert found == [("status_mismatch", invoice["id"], "credited", "open")]
    else:
        # Partly credited, the invoice is still open on both sides.
        assert found == []
