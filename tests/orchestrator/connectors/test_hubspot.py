"""HubSpot CRM connector against the CRM sandbox over real HTTP, through the guard."""

from collections.abc import AsyncIterator
from datetime import date

import httpx
import pytest

from lineage.enums import System
from orchestrator.connectors.errors import Conflict, Retryable, Terminal
from orchestrator.connectors.hubspot import HubSpotCrm
from orchestrator.connectors.ports import CompanyRecord, DealRecord, TaskRecord
from tests.orchestrator.connectors.conftest import CORRELATION_ID, LOOPBACK, ctx, ledger, set_faults

DEAL = DealRecord(
    "deal-1",
    "Acme renewal",
    1234567,
    "USD",
    "closedwon",
    "acct-1",
    date(2024, 3, 1),
    date(2025, 3, 1),
)
TASK = TaskRecord("risk:acct-1", "Renewal at risk", "Usage down 40%", "HIGH")


@pytest.fixture
async def crm(sandbox: str) -> AsyncIterator[HubSpotCrm]:
    connector = HubSpotCrm(f"{sandbox}/crm", access_token="pat-x", allow=LOOPBACK)
    yield connector
    await connector.aclose()


async def test_upserts_are_repeatable_and_found_by_external_id(
    crm: HubSpotCrm, sandbox: str
) -> None:
    company = await crm.upsert_company(CompanyRecord("acct-1", "Acme", "acme.test"), ctx=ctx())
    first = await crm.upsert_deal(DEAL, ctx=ctx())
    again = await crm.upsert_deal(DEAL, ctx=ctx())
    found = await crm.find("deals", "deal-1", ctx=ctx())

    assert (company.system, company.object_type) == (System.CRM, "companies")
    assert first.record_id == again.record_id == (found.record_id if found else None)
    deal = httpx.get(f"{sandbox}/crm/crm/v3/objects/deals/{first.record_id}").json()["properties"]
    assert (deal["amount"], deal["deal_currency_code"], deal["renewal_date"]) == (
        "12345.67",
        "USD",
        "2025-03-01",
    )
    assert await crm.find("deals", "deal-404", ctx=ctx()) is None
    rows = {(r["type"], r["external_id"]): r["create_calls"] for r in ledger(f"{sandbox}/crm")}
    assert rows == {("companies", "acct-1"): 1, ("deals", "deal-1"): 2}


async def test_second_task_with_one_external_id_is_a_conflict(crm: HubSpotCrm) -> None:
    created = await crm.create_task(TASK, ctx=ctx())

    with pytest.raises(Conflict):
        await crm.create_task(TASK, ctx=ctx())
    found = await crm.find("tasks", TASK.external_id, ctx=ctx())

    assert found is not None
    assert found.record_id == created.record_id


async def test_commit_then_drop_then_lookup_finds_the_task(crm: HubSpotCrm, sandbox: str) -> None:
    set_faults(sandbox, "crm.tasks:drop_after_commit=1")

    with pytest.raises(Retryable):
        await crm.create_task(TASK, ctx=ctx())
    found = await crm.find("tasks", TASK.external_id, ctx=ctx())

    assert found is not None


@pytest.mark.parametrize(
    ("spec", "error", "classification"),
    [
        ("crm:503=1", Retryable, "server"),
        ("crm:429=1", Retryable, "rate_limit"),
        ("crm:422=1", Terminal, "validation"),
    ],
)
async def test_failures_are_classified(
    crm: HubSpotCrm, sandbox: str, spec: str, error: type[Exception], classification: str
) -> None:
    set_faults(sandbox, spec)

    with pytest.raises(error) as caught:
        await crm.upsert_deal(DEAL, ctx=ctx())

    assert getattr(caught.value, "classification", None) == classification
    assert "HubSpot POST /crm/v3/objects/deals/batch/upsert answered" in str(caught.value)


async def test_correlation_travels_with_the_call(sandbox: str) -> None:
    seen: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        seen.append(request)

    async with httpx.AsyncClient(event_hooks={"request": [record]}) as client:
        crm = HubSpotCrm(f"{sandbox}/crm", access_token="pat-x", client=client)
        await crm.upsert_company(CompanyRecord("acct-1", "Acme"), ctx=ctx())

    [request] = seen
    assert request.headers["X-Correlation-ID"] == CORRELATION_ID
    assert request.headers["traceparent"].split("-")[1] == CORRELATION_ID.replace("-", "")
    assert request.headers["Authorization"] == "Bearer pat-x"
