"""Provisioning and Zendesk support connectors against their sandboxes over real HTTP."""

from collections.abc import AsyncIterator

import pytest

from lineage.enums import System
from orchestrator.connectors.errors import Retryable, Terminal
from orchestrator.connectors.ops import TenantProvisioning, ZendeskSupport
from orchestrator.connectors.ports import TenantRecord, TicketRecord
from tests.orchestrator.connectors.conftest import LOOPBACK, ctx, ledger, set_faults

TICKET = TicketRecord(
    "risk:acct-1:2024-03", "Renewal at risk: Acme", "Usage down", "high", ("renewal",)
)


@pytest.fixture
async def provisioning(sandbox: str) -> AsyncIterator[TenantProvisioning]:
    connector = TenantProvisioning(f"{sandbox}/provisioning", allow=LOOPBACK)
    yield connector
    await connector.aclose()


@pytest.fixture
async def support(sandbox: str) -> AsyncIterator[ZendeskSupport]:
    connector = ZendeskSupport(f"{sandbox}/support", allow=LOOPBACK)
    yield connector
    await connector.aclose()


async def test_tenant_enable_disable_and_lookup(
    provisioning: TenantProvisioning, sandbox: str
) -> None:
    created = await provisioning.set_tenant(TenantRecord("acct-1", "Acme", "pro"), ctx=ctx())
    disabled = await provisioning.set_tenant(
        TenantRecord("acct-1", "Acme", "pro", enabled=False), ctx=ctx()
    )
    found = await provisioning.find_tenant("acct-1", ctx=ctx())

    assert (created.system, created.http_status, disabled.http_status) == (
        System.PROVISIONING,
        201,
        200,
    )
    assert found is not None
    assert found.record_id == created.record_id
    assert await provisioning.find_tenant("acct-2", ctx=ctx()) is None
    [row] = ledger(f"{sandbox}/provisioning")
    assert row["enabled"] is False


async def test_ticket_opens_once_and_is_found(support: ZendeskSupport, sandbox: str) -> None:
    first = await support.open_ticket(TICKET, ctx=ctx())
    repeat = await support.open_ticket(TICKET, ctx=ctx())
    found = await support.find_ticket(TICKET.external_id, ctx=ctx())

    assert (first.http_status, repeat.http_status) == (201, 200)
    assert first.record_id == repeat.record_id == (found.record_id if found else None)
    assert len(ledger(f"{sandbox}/support")) == 1


async def test_commit_then_drop_then_lookup(
    support: ZendeskSupport, provisioning: TenantProvisioning, sandbox: str
) -> None:
    set_faults(sandbox, "support:drop_after_commit=1,provisioning:drop_after_commit=1")

    with pytest.raises(Retryable):
        await support.open_ticket(TICKET, ctx=ctx())
    with pytest.raises(Retryable):
        await provisioning.set_tenant(TenantRecord("acct-1", "Acme"), ctx=ctx())

    assert await support.find_ticket(TICKET.external_id, ctx=ctx()) is not None
    assert await provisioning.find_tenant("acct-1", ctx=ctx()) is not None


@pytest.mark.parametrize(
    ("spec", "error", "classification"),
    [
        ("support:502=1,provisioning:502=1", Retryable, "server"),
        ("support:429=1,provisioning:429=1", Retryable, "rate_limit"),
        ("support:422=1,provisioning:422=1", Terminal, "validation"),
    ],
)
async def test_failures_are_classified(
    support: ZendeskSupport,
    provisioning: TenantProvisioning,
    sandbox: str,
    spec: str,
    error: type[Exception],
    classification: str,
) -> None:
    set_faults(sandbox, spec)

    with pytest.raises(error) as ticket_error:
        await support.open_ticket(TICKET, ctx=ctx())
    with pytest.raises(error) as tenant_error:
        await provisioning.set_tenant(TenantRecord("acct-1", "Acme"), ctx=ctx())

    assert getattr(ticket_error.value, "classification", None) == classification
    assert getattr(tenant_error.value, "classification", None) == classification


async def test_invalid_ticket_is_terminal(support: ZendeskSupport) -> None:
    with pytest.raises(Terminal) as caught:
        await support.open_ticket(TicketRecord("t-1", "", priority="critical"), ctx=ctx())

    assert caught.value.http_status == 422
