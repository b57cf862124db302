"""The ERP's other record types, upserts by external ID, lists by period and durable state."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.app import create_sandbox_app
from tests.support.servers import serve_in_thread


@pytest.fixture
def erp() -> Iterator[httpx.Client]:
    with (
        serve_in_thread(create_sandbox_app(faults="")) as url,
        httpx.Client(base_url=f"{url}/erp") as client,
    ):
        yield client


# Bodies shaped as in Oracle's NetSuite REST examples (../shared/fixtures/erp/netsuite, not
# copied here: Oracle's documentation carries no open licence).


def customer(external_id: str = "cus_1", **fields: Any) -> dict[str, Any]:
    return {
        "companyName": "Company 1",
        "email": "customer@example.com",
        "externalId": external_id,
        **fields,
    }


def journal_entry(external_id: str = "je_1", *, credit: Any = 300) -> dict[str, Any]:
    return {
        "externalId": external_id,
        "tranDate": "2024-03-31",
        "subsidiary": {"id": "1"},
        "line": {
            "items": [
                {"account": {"id": "10"}, "debit": 300},
                {"account": {"id": "14"}, "credit": credit},
            ]
        },
    }


def payment(external_id: str = "pay_1", *, applied: Any = 15.5) -> dict[str, Any]:
    return {
        "externalId": external_id,
        "customer": {"externalId": "cus_1"},
        "currency": {"refName": "USD"},
        "tranDate": "2024-03-05",
        "payment": 15.5,
        "apply": {"items": [{"doc": {"externalId": "in_1"}, "apply": True, "amount": applied}]},
    }


def revenue_plan(external_id: str = "rp_1", *, second: Any = 100) -> dict[str, Any]:
    return {
        "externalId": external_id,
        "createdFrom": {"externalId": "in_1"},
        "currency": {"refName": "USD"},
        "amount": 300,
        "plannedRevenue": {
            "items": [
                {"postingPeriod": "2024-03", "amount": 100},
                {"postingPeriod": "2024-04", "amount": second},
                {"postingPeriod": "2024-05", "amount": 100},
            ]
        },
    }


def invoice(external_id: str, tran_date: str) -> dict[str, Any]:
    return {
        "externalId": external_id,
        "entity": {"externalId": "cus_1"},
        "currency": {"refName": "USD"},
        "tranDate": tran_date,
        "item": {"items": [{"amount": 10}]},
    }


@pytest.mark.parametrize(
    ("record_type", "body", "total"),
    [
        ("customer", customer(), None),
        ("customerpayment", payment(), 15.5),
        ("journalentry", journal_entry(), 300),
        ("revenueplan", revenue_plan(), 300),
    ],
)
def test_create_then_lookup_by_external_id(
    erp: httpx.Client, record_type: str, body: dict[str, Any], total: float | None
) -> None:
    created = erp.post(f"/record/v1/{record_type}", json=body, headers={"Idempotency-Key": "k1"})
    repeat = erp.post(f"/record/v1/{record_type}", json=body, headers={"Idempotency-Key": "k1"})

    assert created.status_code == repeat.status_code == 204
    assert repeat.headers["Location"] == created.headers["Location"]
    found = erp.get(f"/record/v1/{record_type}/eid:{body['externalId']}").json()
    assert found == erp.get(created.headers["Location"]).json()
    assert found.get("total") == total
    [row] = erp.get("/_admin/ledger").json()["records"]
    assert (row["type"], row["external_id"], row["create_calls"]) == (
        record_type,
        body["externalId"],
        2,
    )


def test_customer_accepts_both_spellings_from_oracle_examples(erp: httpx.Client) -> None:
    example = {"entityid": "New Customer", "companyname": "My Company", "subsidiary": {"id": "1"}}

    response = erp.post("/record/v1/customer", json={**example, "externalId": "cus_2"})

    assert response.status_code == 204
    record = erp.get("/record/v1/customer/eid:cus_2").json()
    assert (record["companyName"], record["entityId"]) == ("My Company", "New Customer")
    assert record["subsidiary"] == {"id": "1"}


@pytest.mark.parametrize(
    ("record_type", "body"),
    [
        pytest.param("customer", customer(companyName=""), id="customer-without-name"),
        pytest.param("journalentry", journal_entry(credit=299), id="unbalanced-journal"),
        pytest.param("customerpayment", payment(applied=16), id="over-applied-payment"),
        pytest.param("revenueplan", revenue_plan(second=99), id="plan-not-adding-up"),
    ],
)
def test_invalid_records_are_400(erp: httpx.Client, record_type: str, body: dict[str, Any]) -> None:
    response = erp.post(f"/record/v1/{record_type}", json=body)

    assert response.status_code == 400
    assert response.json()["o:errorDetails"][0]["o:errorCode"] == "USER_ERROR"
    assert erp.get("/_admin/ledger").json()["records"] == []


def test_unknown_record_type_is_404(erp: httpx.Client) -> None:
    response = erp.post("/record/v1/salesorder", json=customer())

    assert response.status_code == 404
    assert response.json()["o:errorDetails"][0]["o:errorCode"] == "INVALID_RECORD_TYPE"


def test_upsert_by_external_id_creates_then_updates_in_place(erp: httpx.Client) -> None:
    first = erp.put("/record/v1/customer/eid:cus_9", json=customer("cus_9", email="a@example.com"))
    second = erp.put("/record/v1/customer/eid:cus_9", json=customer("cus_9", email="b@example.com"))

    assert first.status_code == second.status_code == 204
    assert first.headers["Location"] == second.headers["Location"]
    record = erp.get("/record/v1/customer/eid:cus_9").json()
    assert record["email"] == "b@example.com"
    [row] = erp.get("/_admin/ledger").json()["records"]
    assert row["create_calls"] == 2


def test_upsert_takes_the_external_id_from_the_path(erp: httpx.Client) -> None:
    body = customer()
    del body["externalId"]

    assert erp.put("/record/v1/customer/eid:cus_7", json=body).status_code == 204
    conflicting = erp.put("/record/v1/customer/eid:cus_8", json=customer("cus_other"))

    assert erp.get("/record/v1/customer/eid:cus_7").status_code == 200
    assert conflicting.status_code == 400


def test_list_by_period_pages_full_records(erp: httpx.Client) -> None:
    for n, day in enumerate(["2024-02-28", "2024-03-01", "2024-03-31", "2024-04-01"]):
        erp.post("/record/v1/invoice", json=invoice(f"in_{n}", day))

    march = erp.get("/record/v1/invoice", params={"period": "2024-03"}).json()
    page = erp.get("/record/v1/invoice", params={"limit": 3, "offset": 2}).json()

    assert [r["externalId"] for r in march["items"]] == ["in_1", "in_2"]
    assert (march["count"], march["totalResults"], march["hasMore"]) == (2, 2, False)
    assert march["items"][0]["total"] == 10
    assert [r["externalId"] for r in page["items"]] == ["in_2", "in_3"]
    assert (page["totalResults"], page["hasMore"]) == (4, False)
    assert erp.get("/record/v1/invoice", params={"period": "March"}).status_code == 422


def test_state_survives_a_restart_with_a_data_directory(tmp_path: Path) -> None:
    with serve_in_thread(create_sandbox_app(data_dir=tmp_path, faults="")) as url:
        httpx.post(
            f"{url}/erp/record/v1/customer", json=customer(), headers={"Idempotency-Key": "k"}
        )
        httpx.post(f"{url}/erp/record/v1/invoice", json=invoice("in_1", "2024-03-01"))

    with serve_in_thread(create_sandbox_app(data_dir=tmp_path, faults="")) as url:
        repeat = httpx.post(
            f"{url}/erp/record/v1/customer", json=customer(), headers={"Idempotency-Key": "k"}
        )
        found = httpx.get(f"{url}/erp/record/v1/invoice/eid:in_1")
        ledger = httpx.get(f"{url}/erp/_admin/ledger").json()["records"]
        next_one = httpx.post(f"{url}/erp/record/v1/invoice", json=invoice("in_2", "2024-03-02"))

    assert repeat.status_code == 204
    assert repeat.headers["Location"].endswith("/record/v1/customer/1")
    assert found.json()["id"] == "2"
    assert [(r["type"], r["create_calls"]) for r in ledger] == [("customer", 2), ("invoice", 1)]
    # Internal ids keep counting from where they were: no id is handed out twice.
    assert next_one.headers["Location"].endswith("/record/v1/invoice/3")


def test_without_a_data_directory_state_is_per_app() -> None:
    with serve_in_thread(create_sandbox_app(faults="")) as url:
        httpx.post(f"{url}/erp/record/v1/customer", json=customer())
    with serve_in_thread(create_sandbox_app(faults="")) as url:
        assert httpx.get(f"{url}/erp/_admin/ledger").json()["records"] == []
