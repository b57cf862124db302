"""Provisioning and support sandboxes: idempotent by external ID, ledgers, faults."""

from collections.abc import Iterator

import httpx
import pytest

from sandbox.app import create_sandbox_app
from tests.support.servers import serve_in_thread


@pytest.fixture
def sandbox() -> Iterator[httpx.Client]:
    with (
        serve_in_thread(create_sandbox_app(faults="")) as url,
        httpx.Client(base_url=url) as client,
    ):
        yield client


def test_tenant_upsert_enable_disable_are_idempotent(sandbox: httpx.Client) -> None:
    first = sandbox.put("/provisioning/v1/tenants/acme", json={"name": "Acme", "plan": "pro"})
    repeat = sandbox.put("/provisioning/v1/tenants/acme", json={"name": "Acme", "plan": "pro"})
    disabled = [sandbox.post("/provisioning/v1/tenants/acme/disable") for _ in range(2)]
    enabled = sandbox.post("/provisioning/v1/tenants/acme/enable")

    assert (first.status_code, repeat.status_code) == (201, 200)
    assert first.json()["tenant"]["id"] == repeat.json()["tenant"]["id"]
    assert [d.json()["tenant"]["enabled"] for d in disabled] == [False, False]
    assert enabled.json()["tenant"]["enabled"] is True
    assert sandbox.get("/provisioning/v1/tenants/acme").json()["tenant"]["plan"] == "pro"
    [row] = sandbox.get("/provisioning/_admin/ledger").json()["records"]
    assert (row["external_id"], row["enabled"], row["create_calls"]) == ("acme", True, 5)


def test_unknown_tenant_cannot_be_enabled(sandbox: httpx.Client) -> None:
    assert sandbox.post("/provisioning/v1/tenants/ghost/enable").status_code == 404
    assert sandbox.get("/provisioning/v1/tenants/ghost").status_code == 404
    bad = sandbox.put("/provisioning/v1/tenants/acme", json={"enabled": "yes"})
    assert bad.status_code == 422


def test_ticket_is_opened_once_per_external_id(sandbox: httpx.Client) -> None:
    ticket = {
        "subject": "Renewal risk: Acme",
        "comment": {"body": "Usage down 40%"},
        "priority": "high",
        "external_id": "risk:acme:2024-03",
    }

    first = sandbox.post(
        "/support/api/v2/tickets", json={"ticket": ticket}, headers={"X-Correlation-ID": "c1"}
    )
    repeat = sandbox.post("/support/api/v2/tickets", json={"ticket": ticket})
    found = sandbox.get(
        "/support/api/v2/tickets", params={"external_id": "risk:acme:2024-03"}
    ).json()

    assert (first.status_code, repeat.status_code) == (201, 200)
    assert first.json()["ticket"]["id"] == repeat.json()["ticket"]["id"] == 1
    assert first.json()["ticket"]["correlation_id"] == "c1"
    assert [t["id"] for t in found["tickets"]] == [1]
    assert (
        sandbox.get("/support/api/v2/tickets/1.json").json()["ticket"]["subject"]
        == ticket["subject"]
    )
    [row] = sandbox.get("/support/_admin/ledger").json()["records"]
    assert row["create_calls"] == 2


def test_invalid_ticket_is_422(sandbox: httpx.Client) -> None:
    response = sandbox.post("/support/api/v2/tickets", json={"ticket": {"subject": "x"}})

    assert response.status_code == 422
    assert sandbox.get("/support/_admin/ledger").json()["records"] == []


def test_faults_reach_each_system_by_operation(sandbox: httpx.Client) -> None:
    sandbox.post(
        "/support/_admin/faults", json={"faults": "support.tickets:503=1,provisioning:429=1"}
    )

    ticket = sandbox.post(
        "/support/api/v2/tickets", json={"ticket": {"subject": "s", "external_id": "e"}}
    )
    tenant = sandbox.put("/provisioning/v1/tenants/acme", json={})
    erp = sandbox.get("/erp/record/v1/invoice/eid:x")

    assert ticket.status_code == 503
    assert (tenant.status_code, tenant.headers["Retry-After"]) == (429, "1")
    # One plan for the whole sandbox: the ERP reads the same SPEC and is not affected by it.
    assert erp.status_code == 404
    assert sandbox.get("/erp/_admin/faults").json()["faults"].startswith("support.tickets")
