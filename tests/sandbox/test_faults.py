"""Fault injection: the SPEC parses as documented, and each kind happens at its rate over HTTP."""

import logging
import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.types import Message

from sandbox.app import create_sandbox_app
from sandbox.fault_middleware import DROPPED_MESSAGE
from sandbox.faults import FaultController, FaultSpecError, parse_spec
from tests.support.servers import serve_in_thread

INVOICES = "/record/v1/invoice"


@pytest.fixture
def erp_url() -> Iterator[str]:
    with serve_in_thread(create_sandbox_app(faults="")) as url:
        yield f"{url}/erp"


@pytest.fixture
def erp(erp_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=erp_url, timeout=10) as client:
        yield client


def set_faults(client: httpx.Client, spec: str) -> dict[str, Any]:
    response = client.post("/_admin/faults", json={"faults": spec})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def invoice(external_id: str, amount: float = 100.0) -> dict[str, Any]:
    return {
        "externalId": external_id,
        "entity": {"externalId": "cus_1"},
        "currency": {"refName": "USD"},
        "tranDate": "2024-03-01",
        "item": {"items": [{"amount": amount, "description": "Pro plan"}]},
    }


class TestParse:
    def test_spec_from_the_issue_parses(self) -> None:
        plan = parse_spec(
            "erp:500=0.1,erp:429=0.2,erp.invoice:drop_after_commit=0.02,"
            "erp:drift_amount=0.01,crm:latency_ms=200,seed=7"
        )

        assert plan.seed == 7
        assert [(r.system, r.operation, r.kind, r.value) for r in plan.rules] == [
            ("erp", None, "500", 0.1),
            ("erp", None, "429", 0.2),
            ("erp", "invoice", "drop_after_commit", 0.02),
            ("erp", None, "drift_amount", 0.01),
            ("crm", None, "latency_ms", 200.0),
        ]

    def test_outage_durations(self) -> None:
        [once, cycle] = parse_spec("erp:outage=500ms,crm:outage=10s/1m").rules

        assert (once.value, once.period_s) == (0.5, math.inf)
        assert (cycle.value, cycle.period_s) == (10.0, 60.0)

    @pytest.mark.parametrize(
        "spec",
        [
            "mainframe:500=0.1",
            "erp:501=0.1",
            "erp:500=1.5",
            "erp:500=abc",
            "erp:500=0.6,erp:503=0.5",
            "erp:500=0.1,erp:500=0.2",
            "erp:outage=2m/1m",
            "erp:outage=soon",
            "erp500=0.1",
            "seed=x",
        ],
    )
    def test_invalid_spec_is_refused(self, spec: str) -> None:
        with pytest.raises(FaultSpecError):
            parse_spec(spec)

    def test_operation_rule_beats_system_rule(self) -> None:
        controller = FaultController.from_spec("erp:500=1,erp.customer:500=0")

        assert controller.decide("erp", "invoice").status == 500
        assert controller.decide("erp", "customer").status is None


def decisions(spec: str, n: int) -> list[tuple[int | None, bool]]:
    controller = FaultController.from_spec(spec)
    return [
        (d.status, d.drop_after_commit)
        for d in (controller.decide("erp", "invoice") for _ in range(n))
    ]


def test_same_seed_same_fates_other_seed_other_fates() -> None:
    spec = "erp:500=0.3,erp:drop_after_commit=0.3"

    assert decisions(f"{spec},seed=1", 200) == decisions(f"{spec},seed=1", 200)
    assert decisions(f"{spec},seed=1", 200) != decisions(f"{spec},seed=2", 200)


def test_outage_windows_follow_the_clock() -> None:
    now = [1000.0]
    controller = FaultController.from_spec("erp:outage=10s/60s", clock=lambda: now[0])

    statuses = []
    for at in (0, 9.5, 10, 59, 60, 75):
        now[0] = 1000.0 + at
        decision = controller.decide("erp", "invoice")
        statuses.append((decision.status, decision.retry_after_s))

    assert statuses == [(503, 10), (503, 1), (None, None), (None, None), (503, 10), (None, None)]


def test_rate_limit_refills_with_time() -> None:
    now = [0.0]
    controller = FaultController.from_spec("erp:rate_limit=2", clock=lambda: now[0])

    first = [controller.decide("erp", "invoice").status for _ in range(3)]
    now[0] = 0.5
    after_half_second = controller.decide("erp", "invoice").status

    assert first == [None, None, 429]
    assert after_half_second is None


def test_error_statuses_happen_at_their_rates(erp: httpx.Client) -> None:
    set_faults(erp, "erp:500=0.1,erp:502=0.1,erp:503=0.1,erp:422=0.1,erp:429=0.1,seed=3")

    responses = [erp.get(f"{INVOICES}/eid:in_missing") for _ in range(1000)]

    counts = Counter(r.status_code for r in responses)
    for status in (500, 502, 503, 429):
        assert 70 <= counts[status] <= 130, counts
    # A read that draws the 422 band is answered as if no fault applied (404 here).
    assert counts[422] == 0
    assert 500 <= counts[404] <= 700
    rate_limited = [r for r in responses if r.status_code == 429]
    assert {r.headers["Retry-After"] for r in rate_limited} == {"1"}
    # Injected errors speak the vendor's dialect, so connectors classify them like real ones.
    assert (
        rate_limited[0].json()["o:errorDetails"][0]["o:errorCode"] == "CONCURRENCY_LIMIT_EXCEEDED"
    )
    assert all("Retry-After" not in r.headers for r in responses if r.status_code == 500)


def test_an_injected_422_refuses_writes_and_leaves_reads_alone(erp: httpx.Client) -> None:
    set_faults(erp, "erp:422=1")

    read = erp.get(f"{INVOICES}/eid:in_1")
    write = erp.post(INVOICES, json=invoice("in_1"))
    set_faults(erp, "")

    assert read.status_code == 404
    assert write.status_code == 422
    assert erp.get("/_admin/ledger").json()["records"] == []


def test_retry_after_is_configurable(erp: httpx.Client) -> None:
    set_faults(erp, "erp:429=1,erp:retry_after=7")

    response = erp.get(f"{INVOICES}/eid:in_1")

    assert (response.status_code, response.headers["Retry-After"]) == (429, "7")


def test_errors_before_the_handler_write_nothing(erp: httpx.Client) -> None:
    set_faults(erp, "erp.invoice:503=1")

    response = erp.post(INVOICES, json=invoice("in_1"))
    set_faults(erp, "")

    assert response.status_code == 503
    assert erp.get("/_admin/ledger").json()["records"] == []


def test_drop_after_commit_cuts_the_connection_after_writing(
    erp: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    set_faults(erp, "erp.invoice:drop_after_commit=0.1,seed=5")

    dropped = 0
    for n in range(1000):
        try:
            response = erp.post(
                INVOICES, json=invoice(f"in_{n}"), headers={"Idempotency-Key": f"k{n}"}
            )
        except httpx.TransportError:
            dropped += 1
        else:
            assert response.status_code == 204

    assert 70 <= dropped <= 130
    # Each cut is logged as the fault it is, not as uvicorn's ERROR about an incomplete response.
    server_log = [r for r in caplog.records if r.name == "uvicorn.error"]
    assert [r.getMessage() for r in server_log if r.levelno >= logging.WARNING] == []
    assert [r.getMessage() for r in server_log].count(DROPPED_MESSAGE) == dropped
    records = erp.get("/_admin/ledger").json()["records"]
    assert len(records) == 1000


def test_hang_holds_the_call_past_the_client_timeout(erp_url: str) -> None:
    with httpx.Client(base_url=erp_url, timeout=5) as admin:
        set_faults(admin, "erp.invoice:hang=0.2,erp:hang_s=30,seed=11")
    hung = 0
    # Half a second: a 0.1 s timeout also cut calls that were merely slow on a loaded machine
    # (the call was written, and counted as hung).
    with httpx.Client(base_url=erp_url, timeout=0.5) as client:
        for n in range(60):
            try:
                response = client.post(INVOICES, json=invoice(f"in_{n}"))
            except httpx.ReadTimeout:
                hung += 1
            else:
                assert response.status_code == 204
    with httpx.Client(base_url=erp_url, timeout=5) as admin:
        records = admin.get("/_admin/ledger").json()["records"]

    assert 4 <= hung <= 20
    # A hang happens before the handler: nothing was written for the calls that hung.
    assert len(records) == 60 - hung


def test_latency_is_added_to_every_call(erp_url: str) -> None:
    with httpx.Client(base_url=erp_url, timeout=5) as admin:
        set_faults(admin, "erp:latency_ms=1000")
    with httpx.Client(base_url=erp_url, timeout=0.1) as client, pytest.raises(httpx.ReadTimeout):
        client.get(f"{INVOICES}/eid:in_1")
    with httpx.Client(base_url=erp_url, timeout=5) as admin:
        set_faults(admin, "")
        assert admin.get(f"{INVOICES}/eid:in_1").status_code == 404


def test_outage_answers_503_with_retry_after(erp: httpx.Client) -> None:
    set_faults(erp, "erp:outage=1h")

    responses = [erp.get(f"{INVOICES}/eid:in_1") for _ in range(5)]

    assert {r.status_code for r in responses} == {503}
    assert all(3500 <= int(r.headers["Retry-After"]) <= 3600 for r in responses)


def test_rate_limit_answers_429_with_retry_after(erp: httpx.Client) -> None:
    set_faults(erp, "erp:rate_limit=0.001")

    first, second = erp.get(f"{INVOICES}/eid:in_1"), erp.get(f"{INVOICES}/eid:in_1")

    assert first.status_code == 404
    assert second.status_code == 429
    assert int(second.headers["Retry-After"]) > 900


def test_drift_stores_wrong_values_at_the_configured_rates(erp: httpx.Client) -> None:
    set_faults(
        erp,
        "erp.invoice:drift_amount=0.1,erp.invoice:drift_currency=0.1,"
        "erp.invoice:drift_status=0.1,erp.invoice:drift_drop=0.1,seed=9",
    )

    for n in range(1000):
        assert erp.post(INVOICES, json=invoice(f"in_{n}")).status_code == 204

    ledger = erp.get("/_admin/ledger").json()
    assert 70 <= len(ledger["dropped"]) <= 130
    assert len(ledger["records"]) + len(ledger["dropped"]) == 1000
    kinds = Counter(kind for r in ledger["records"] for kind in r["drift"])
    for kind in ("drift_amount", "drift_currency", "drift_status"):
        assert 60 <= kinds[kind] <= 120, kinds
    by_drift = {kind: next(r for r in ledger["records"] if kind in r["drift"]) for kind in kinds}
    assert by_drift["drift_amount"]["total"] != 100.0
    assert by_drift["drift_currency"]["currency"] == "EUR"
    status = erp.get(f"{INVOICES}/eid:{by_drift['drift_status']['external_id']}").json()["status"]
    assert status["refName"] == "Pending Approval"
    clean = next(r for r in ledger["records"] if not r["drift"])
    assert (clean["total"], clean["currency"]) == (100.0, "USD")
    # A silently dropped record answered 204, yet no lookup finds it.
    missing = ledger["dropped"][0]["external_id"]
    assert erp.get(f"{INVOICES}/eid:{missing}").status_code == 404


class TestAdmin:
    def test_read_replace_and_clear(self, erp: httpx.Client, erp_url: str) -> None:
        described = set_faults(erp, "erp:500=0.5,seed=4")
        sandbox_root = erp_url.removesuffix("/erp")

        assert described["faults"] == "erp:500=0.5,seed=4"
        assert described["seed"] == 4
        assert described["rules"] == [
            {"system": "erp", "operation": None, "kind": "500", "value": "0.5"}
        ]
        assert erp.get("/_admin/faults").json() == described
        # Admin paths are never faulted, even under a total outage.
        set_faults(erp, "erp:outage=1h")
        assert erp.get("/_admin/ledger").status_code == 200
        assert set_faults(erp, "")["rules"] == []
        assert httpx.get(f"{sandbox_root}/healthz").status_code == 200

    def test_invalid_spec_is_400_and_keeps_the_old_plan(self, erp: httpx.Client) -> None:
        set_faults(erp, "erp:500=0.5")

        bad = erp.post("/_admin/faults", json={"faults": "erp:500=2"})
        not_a_spec = erp.post("/_admin/faults", json={"spec": "erp:500=0.1"})

        assert bad.status_code == 400
        assert "erp:500=2" in bad.json()["error"]["message"]
        assert not_a_spec.status_code == 400
        assert erp.get("/_admin/faults").json()["faults"] == "erp:500=0.5"

    def test_spec_given_at_start_is_in_force(self) -> None:
        with serve_in_thread(create_sandbox_app(faults="erp:503=1")) as url:
            response = httpx.get(f"{url}/erp{INVOICES}/eid:in_1")
            described = httpx.get(f"{url}/erp/_admin/faults").json()

        assert response.status_code == 503
        assert described["faults"] == "erp:503=1"


async def test_a_caller_gone_before_its_body_is_read_is_no_server_error() -> None:
    # A worker whose timeout fired on a loaded machine: the system reads the body and finds
    # the client gone. That raised ClientDisconnect out of the app, and uvicorn logged an
    # "Exception in ASGI application" traceback per call in the demo's output.
    app = create_sandbox_app(faults="")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": f"/erp{INVOICES}", "raw_path": f"/erp{INVOICES}".encode(),
        "root_path": "", "query_string": b"", "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {},
    }  # fmt: skip
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)

    assert sent == []
