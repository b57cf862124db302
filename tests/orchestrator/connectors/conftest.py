"""Shared by the connector tests: one sandbox over real HTTP, its fault switch, a call context."""

from collections.abc import Iterator

import httpx
import pytest

from orchestrator.connectors.ports import CallContext
from sandbox.app import create_sandbox_app
from tests.support.servers import serve_in_thread

CORRELATION_ID = "0190f1a2-3b4c-7d5e-8f60-718293a4b5c6"
# The sandbox runs on loopback, which the outbound guard refuses unless allowed.
LOOPBACK = ["127.0.0.0/8"]


def ctx(step: str = "step") -> CallContext:
    return CallContext(correlation_id=CORRELATION_ID, idempotency_key=f"{CORRELATION_ID}:{step}")


@pytest.fixture
def sandbox() -> Iterator[str]:
    with serve_in_thread(create_sandbox_app(faults="")) as url:
        yield url


def set_faults(sandbox_url: str, spec: str) -> None:
    response = httpx.post(f"{sandbox_url}/erp/_admin/faults", json={"faults": spec})
    assert response.status_code == 200, response.text


def ledger(system_url: str) -> list[dict[str, object]]:
    records: list[dict[str, object]] = httpx.get(f"{system_url}/_admin/ledger").json()["records"]
    return records
