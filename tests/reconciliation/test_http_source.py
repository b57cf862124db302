"""The HTTP source reads the sandbox billing and ERP list endpoints into contract tables."""

from datetime import UTC, datetime

import httpx
import pytest

from reconciliation.errors import SourceError
from reconciliation.http_source import HttpSource, to_minor


def _put(sandbox_url: str, record_type: str, external_id: str, body: dict[str, object]) -> str:
    response = httpx.put(f"{sandbox_url}/erp/record/v1/{record_type}/eid:{external_id}", json=body)
    assert response.status_code == 204, response.text
    return response.headers["Location"].rsplit("/", 1)[1]


def _invoice(sandbox_url: str, external_id: str, tran_date: str, amount: float) -> str:
    return _put(
        sandbox_url,
        "invoice",
        external_id,
        {
            "entity": {"externalId": "cus_1"},
            "currency": {"refName": "USD"},
            "tranDate": tran_date,
            "item": {"items": [{"amount": amount}, {"amount": 0.01}]},
        },
    )


async def test_erp_records_of_the_period_and_its_neighbours_become_contract_tables(
    sandbox_url: str,
) -> None:
    november = _invoice(sandbox_url, "in_nov", "2026-11-05", 12.33)
    october = _invoice(sandbox_url, "in_oct", "2026-10-31", 1.0)
    _invoice(sandbox_url, "in_aug", "2026-08-01", 9.0)
    _put(
        sandbox_url,
        "customerpayment",
        "py_nov",
        {
            "customer": {"externalId": "cus_1"},
            "currency": {"refName": "USD"},
            "tranDate": "2026-11-20",
            "payment": 12.34,
            "apply": {"items": [{"doc": {"externalId": "in_nov"}, "amount": 12.34}]},
        },
    )
    _put(
        sandbox_url,
        "revenueplan",
        "rev_nov",
        {
            "createdFrom": {"externalId": "in_nov"},
            "currency": {"refName": "USD"},
            "amount": 12.34,
            "plannedRevenue": {
                "items": [
                    {"postingPeriod": "2026-11", "amount": 6.17},
                    {"postingPeriod": "2026-12", "amount": 6.17},
                ]
            },
        },
    )
    async with httpx.AsyncClient() as client:
        snapshot = await HttpSource(
            billing_url=None, erp_url=f"{sandbox_url}/erp", client=client
        ).fetch("2026-11")

    invoices = sorted(snapshot["erp_invoices"].to_pylist(), key=lambda r: r["external_id"])
    assert invoices == [
        {
            "record_id": november,
            "external_id": "in_nov",
            "amount_minor": 1234,
            "currency": "USD",
            "status": "open",
            "period": "2026-11",
        },
        {
            "record_id": october,
            "external_id": "in_oct",
            "amount_minor": 101,
            "currency": "USD",
            "status": "open",
            "period": "2026-10",
        },
    ]
    [payment] = snapshot["erp_payments"].to_pylist()
    assert (payment["invoice_external_id"], payment["amount_minor"]) == ("in_nov", 1234)
    [plan] = snapshot["erp_revenue_schedules"].to_pylist()
    assert (plan["invoice_external_id"], plan["amount_minor"]) == ("in_nov", 1234)
    assert "billing_invoices" not in snapshot


async def test_billing_invoices_are_listed_by_creation_and_booked_by_period_start(
    sandbox_url: str,
) -> None:
    billing = f"{sandbox_url}/billing"
    customer = httpx.post(f"{billing}/v1/customers", data={"email": "a@example.com"}).json()
    draft = httpx.post(f"{billing}/v1/invoices", data={"customer": customer["id"]}).json()
    finalized = httpx.post(f"{billing}/v1/invoices/{draft['id']}/finalize")
    assert finalized.status_code == 200, finalized.text
    period = datetime.now(UTC).strftime("%Y-%m")

    async with httpx.AsyncClient() as client:
        snapshot = await HttpSource(billing_url=billing, erp_url=None, client=client).fetch(period)

    [row] = [r for r in snapshot["billing_invoices"].to_pylist() if r["invoice_id"] == draft["id"]]
    assert row["customer_id"] == customer["id"]
    assert row["currency"] == "USD"
    assert row["status"] == finalized.json()["status"]
    assert row["amount_minor"] == finalized.json()["total"]
    assert row["period"] == period
    assert set(snapshot) == {
        "billing_invoices",
        "billing_payments",
        "billing_credit_notes",
        "billing_subscriptions",
    }


async def test_an_unreachable_system_is_a_source_error() -> None:
    async with httpx.AsyncClient() as client:
        source = HttpSource(billing_url=None, erp_url="http://127.0.0.1:9/erp", client=client)
        with pytest.raises(SourceError, match="GET http://127.0.0.1:9/erp/record/v1/invoice"):
            await source.fetch("2026-11")


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [(12.34, "USD", 1234), (10.05, "USD", 1005), (1500, "JPY", 1500), (1.234, "KWD", 1234)],
)
def test_major_units_become_exact_minor_units(amount: float, currency: str, minor: int) -> None:
    assert to_minor(amount, currency) == minor


def test_an_amount_finer_than_the_currency_is_refused() -> None:
    with pytest.raises(SourceError, match="finer than"):
        to_minor(0.5, "JPY")
