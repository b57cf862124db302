import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from sandbox.app import create_sandbox_app
from tests.support.servers import serve_in_thread

INVOICES = "/record/v1/invoice"


@pytest.fixture
def sandbox_url() -> Iterator[str]:
    with serve_in_thread(create_sandbox_app()) as url:
        yield url


@pytest.fixture
def erp_url(sandbox_url: str) -> str:
    return f"{sandbox_url}/erp"


@pytest.fixture
def erp(erp_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=erp_url, follow_redirects=False) as client:
        yield client


def invoice_json(external_id: str = "in_1", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "externalId": external_id,
        "entity": {"externalId": "cus_1"},
        "currency": {"refName": "USD"},
        "tranDate": "2024-03-01",
        "memo": "Billing invoice in_1",
        "item": {
            "items": [
                {"amount": 10.25, "description": "Pro plan"},
                {"amount": 5.25, "description": "Seats"},
            ]
        },
    }
    body.update(overrides)
    # None in overrides means "leave the field out".
    return {key: value for key, value in body.items() if value is not None}


def create(client: httpx.Client, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post(INVOICES, json=body, headers=headers)


def ledger(client: httpx.Client) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = client.get("/_admin/ledger").json()["records"]
    return records


def assert_netsuite_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status
    body = response.json()
    assert body["status"] == status
    assert body["type"].startswith("https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.")
    assert [d["o:errorCode"] for d in body["o:errorDetails"]] == [code]
    assert body["o:errorDetails"][0]["detail"]


def test_healthz(sandbox_url: str) -> None:
    response = httpx.get(f"{sandbox_url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_create_answers_204_with_location_and_no_body(erp: httpx.Client, erp_url: str) -> None:
    first = create(erp, invoice_json("in_1"), key="k1")
    second = create(erp, invoice_json("in_2"), key="k2")

    assert first.status_code == 204
    assert first.content == b""
    assert first.headers["Location"] == f"{erp_url}{INVOICES}/1"
    assert second.headers["Location"] == f"{erp_url}{INVOICES}/2"


def test_create_without_idempotency_key_is_accepted(erp: httpx.Client) -> None:
    response = create(erp, invoice_json("in_1"))

    assert response.status_code == 204
    assert [r["external_id"] for r in ledger(erp)] == ["in_1"]


def test_idempotent_repeat_returns_same_location_without_new_record(erp: httpx.Client) -> None:
    first = create(erp, invoice_json("in_1"), key="corr:erp.post_invoice")
    repeat = create(erp, invoice_json("in_1"), key="corr:erp.post_invoice")

    assert repeat.status_code == 204
    assert repeat.content == b""
    assert repeat.headers["Location"] == first.headers["Location"]
    [record] = ledger(erp)
    assert record["create_calls"] == 2


def test_duplicate_external_id_is_409(erp: httpx.Client) -> None:
    create(erp, invoice_json("in_1"), key="k1")

    with_other_key = create(erp, invoice_json("in_1"), key="k2")
    without_key = create(erp, invoice_json("in_1"))

    assert_netsuite_error(with_other_key, 409, "DUPLICATE_EXTERNAL_ID")
    assert with_other_key.json()["title"] == "Conflict"
    assert with_other_key.json()["type"].endswith("#section-15.5.10")
    assert_netsuite_error(without_key, 409, "DUPLICATE_EXTERNAL_ID")
    [record] = ledger(erp)
    assert record["create_calls"] == 3


def test_key_reused_for_another_external_id_is_400(erp: httpx.Client) -> None:
    create(erp, invoice_json("in_1"), key="k1")

    response = create(erp, invoice_json("in_2"), key="k1")

    assert_netsuite_error(response, 400, "USER_ERROR")
    assert [r["external_id"] for r in ledger(erp)] == ["in_1"]


def test_get_by_id_and_by_external_id_return_the_record(erp: httpx.Client) -> None:
    location = create(erp, invoice_json("in_1"), key="k1").headers["Location"]

    by_id = erp.get(location)
    by_eid = erp.get(f"{INVOICES}/eid:in_1")

    assert by_id.status_code == 200
    assert by_eid.json() == by_id.json()
    record = by_id.json()
    assert record["id"] == "1"
    assert record["externalId"] == "in_1"
    assert record["entity"] == {"externalId": "cus_1"}
    assert record["currency"] == {"refName": "USD"}
    assert record["tranDate"] == "2024-03-01"
    assert record["memo"] == "Billing invoice in_1"
    assert record["total"] == 15.5
    assert [line["amount"] for line in record["item"]["items"]] == [10.25, 5.25]
    assert record["links"] == [{"rel": "self", "href": location}]
    created = datetime.fromisoformat(record["createdDate"])
    assert created.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=1)


def test_get_by_external_id_accepts_quoted_reserved_characters(erp: httpx.Client) -> None:
    create(erp, invoice_json("in/1 a"), key="k1")

    response = erp.get(f"{INVOICES}/eid:in%2F1%20a")

    assert response.status_code == 200
    assert response.json()["externalId"] == "in/1 a"


@pytest.mark.parametrize("path", [f"{INVOICES}/99", f"{INVOICES}/eid:in_missing"])
def test_unknown_record_is_404(erp: httpx.Client, path: str) -> None:
    create(erp, invoice_json("in_1"), key="k1")

    assert_netsuite_error(erp.get(path), 404, "NONEXISTENT_ID")


def items(*amounts: Any) -> dict[str, Any]:
    return {"items": [{"amount": amount} for amount in amounts]}


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"externalId": None}, id="missing-external-id"),
        pytest.param({"externalId": ""}, id="empty-external-id"),
        pytest.param({"entity": "cus_1"}, id="entity-not-a-reference"),
        pytest.param({"currency": {"refName": "usd"}}, id="currency-not-iso"),
        pytest.param({"tranDate": "01/03/2024"}, id="bad-tran-date"),
        pytest.param({"item": items()}, id="no-lines"),
        pytest.param({"item": items("10.00")}, id="amount-as-string"),
        pytest.param({"item": items(True)}, id="amount-as-bool"),
        pytest.param({"item": items(10.001)}, id="sub-cent-usd"),
        pytest.param({"currency": {"refName": "JPY"}, "item": items(1.5)}, id="fractional-yen"),
    ],
)
def test_invalid_body_is_400(erp: httpx.Client, overrides: dict[str, Any]) -> None:
    response = create(erp, invoice_json("in_1", **overrides), key="k1")

    assert_netsuite_error(response, 400, "USER_ERROR")
    assert ledger(erp) == []


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"[1, 2]", b'{"externalId": "in_1", "item": {"items": [{"amount": NaN}]}}'],
)
def test_unparseable_body_is_400(erp: httpx.Client, raw: bytes) -> None:
    response = erp.post(INVOICES, content=raw, headers={"Content-Type": "application/json"})

    assert_netsuite_error(response, 400, "USER_ERROR")


def test_ledger_lists_each_record_with_total_and_calls(erp: httpx.Client) -> None:
    yen = invoice_json("in_jpy", currency={"refName": "JPY"}, item=items(1000, 200))
    kwd = invoice_json("in_kwd", currency={"refName": "KWD"}, item=items(1.234))
    create(erp, yen, key="k1")
    create(erp, kwd, key="k2")
    create(erp, kwd, key="k2")
    headers = {"Idempotency-Key": "k3", "X-Correlation-ID": "corr-3", "traceparent": "00-ab-cd-01"}
    erp.post(INVOICES, json=invoice_json("in_usd"), headers=headers)

    records = ledger(erp)

    assert [(r["type"], r["id"], r["external_id"]) for r in records] == [
        ("invoice", "1", "in_jpy"),
        ("invoice", "2", "in_kwd"),
        ("invoice", "3", "in_usd"),
    ]
    assert [(r["total"], r["currency"], r["create_calls"]) for r in records] == [
        (1200, "JPY", 1),
        (1.234, "KWD", 2),
        (15.5, "USD", 1),
    ]
    assert records[2]["idempotency_key"] == "k3"
    assert records[2]["correlation_id"] == "corr-3"
    assert records[2]["traceparent"] == "00-ab-cd-01"
    assert all(r["created_at"].endswith("Z") for r in records)


async def test_concurrent_repeats_of_one_key_create_one_record(erp_url: str) -> None:
    async with httpx.AsyncClient(base_url=erp_url) as client:
        responses = await asyncio.gather(
            *(
                client.post(INVOICES, json=invoice_json("in_1"), headers={"Idempotency-Key": "k"})
                for _ in range(20)
            )
        )
        records = (await client.get("/_admin/ledger")).json()["records"]

    assert {r.status_code for r in responses} == {204}
    assert len({r.headers["Location"] for r in responses}) == 1
    assert len(records) == 1
    assert records[0]["create_calls"] == 20
