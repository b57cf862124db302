"""Every workflow's happy path and main failure path, against in-repo fakes of the targets."""

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.intake import incoming_event
from lineage import actions, inbox
from lineage.enums import ExceptionStatus, StepState, System, TxState
from lineage.models import BusinessTransaction, ExceptionItem, WorkflowStep
from orchestrator import engine
from orchestrator.client import hubspot_events, stripe_events
from orchestrator.client.queue import queue_pool
from orchestrator.connectors.errors import Retryable, Terminal
from orchestrator.connectors.hubspot import CrmObject
from orchestrator.deps import WorkerDeps
from orchestrator.engine import Outcome
from orchestrator.settings import OrchestratorSettings
from tests.factories import (
    FIXTURE_INVOICE,
    fixture_subscription,
    new_invoice,
    stripe_event,
    subscription_event,
    with_quantity,
)
from tests.fakes import Fakes, fake_deps


@dataclass
class Harness:
    fakes: Fakes
    deps: WorkerDeps

    async def deliver(self, event: dict[str, Any]) -> tuple[str, Outcome]:
        """Take a Stripe event through intake's mapping and the inbox, then run the engine."""
        decision = stripe_events.route(event)
        async with self.deps.sessionmaker.begin() as session:
            result = await inbox.record_event(
                session,
                incoming_event(
                    source="stripe",
                    source_event_id=event["id"],
                    event_type=event["type"],
                    payload=event,
                    decision=decision,
                    source_system=System.BILLING,
                ),
            )
        return result.correlation_id, await self.settle(result.correlation_id)

    async def settle(self, correlation_id: str) -> Outcome:
        """Run as the deferred wake-ups would, without waiting out the delays."""
        for _ in range(20):
            async with self.deps.sessionmaker.begin() as session:
                tx = await session.get(BusinessTransaction, correlation_id)
                assert tx is not None
                tx.next_attempt_at = None
            outcome = await engine.run_transaction(self.deps, correlation_id)
            if outcome is not Outcome.RETRY_SCHEDULED:
                return outcome
        raise AssertionError("never settled")


@pytest.fixture
async def system(
    database_url: str, redis_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Harness]:
    pool = queue_pool(redis_url)
    settings = OrchestratorSettings(
        database_url=database_url, redis_url=redis_url, retry_base_s=0, retry_cap_s=0
    )
    fakes = Fakes()
    yield Harness(fakes, fake_deps(settings, sessionmaker, pool, fakes))
    await pool.aclose()


async def _tx(sessionmaker: async_sessionmaker[AsyncSession], cid: str) -> BusinessTransaction:
    async with sessionmaker() as session:
        tx = await session.get(BusinessTransaction, cid)
    assert tx is not None
    return tx


async def _exceptions(sessionmaker: async_sessionmaker[AsyncSession]) -> list[ExceptionItem]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(ExceptionItem)))


async def _steps(sessionmaker: async_sessionmaker[AsyncSession], cid: str) -> dict[str, StepState]:
    async with sessionmaker() as session:
        rows = await session.scalars(select(WorkflowStep).where(WorkflowStep.correlation_id == cid))
        return {row.name: row.state for row in rows}


def _created(seconds_ago: int = 60, **fields: Any) -> dict[str, Any]:
    return subscription_event(
        "customer.subscription.created",
        subscription=fixture_subscription(**fields),
        created=int(time.time()) - seconds_ago,
    )


def _tripled(sub: dict[str, Any]) -> dict[str, Any]:
    """The amendment that takes the subscription from one seat to three."""
    return subscription_event(
        "customer.subscription.updated",
        subscription=with_quantity(sub, 3),
        previous_attributes={"items": sub["items"]},
    )


async def test_activation_reaches_crm_erp_and_provisioning(
    system: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    fakes, deliver = system.fakes, system.deliver
    cid, outcome = await deliver(_created())

    sub_id = fixture_subscription()["id"]
    assert outcome is Outcome.POSTED
    # The fixture's item: 2000 minor units a month, quantity 1.
    assert fakes.crm.records[("deal", sub_id)]["amount"] == 24000
    assert fakes.erp.records[("contract", sub_id)]["value"] == 24000
    assert ("customer", "cus_QXg1o8vcGmoR32") in fakes.erp.records
    assert fakes.provisioning.records[("tenant", sub_id)]["enabled"] is True
    assert set((await _steps(sessionmaker, cid)).values()) == {StepState.SUCCEEDED}


async def test_activation_with_a_refusing_provisioner_is_an_exception(
    system: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    fakes, deliver = system.fakes, system.deliver
    fakes.provisioning.fail["set_tenant"] = [Terminal("plan unknown", http_status=422)]

    cid, outcome = await deliver(_created())

    assert outcome is Outcome.EXCEPTION
    steps = await _steps(sessionmaker, cid)
    assert steps["provisioning.enable_tenant"] is StepState.FAILED_TERMINAL
    [item] = await _exceptions(sessionmaker)
    assert "plan unknown" in item.message


async def test_amendment_waits_for_activation_then_updates_crm_and_erp(
    system: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    fakes, deliver = system.fakes, system.deliver
    sub = fixture_subscription()

    early, waiting = await deliver(_tripled(sub))
    assert waiting is Outcome.WAITING
    assert "subscription_activated" in ((await _tx(sessionmaker, early)).state_reason or "")

    _, activated = await deliver(_created())
    assert activated is Outcome.POSTED
    assert await system.settle(early) is Outcome.POSTED
    assert fakes.crm.records[("deal", sub["id"])]["amount"] == 72000
    assert fakes.erp.records[("contract", sub["id"])]["value"] == 72000
    # Two more seats at 2000 a month, two thirds of the 30-day period left (factories).
    [(key, entry)] = [(k, r) for k, r in fakes.erp.records.items() if k[0] == "journalentry"]
    assert key[1].startswith(f"proration:{sub['id']}:")
    assert entry["subsidiary"] == "1"  # concord_us, from the mappings: the fake ERP has none
    debits = {line.account: line.debit_minor for line in entry["lines"] if line.debit_minor}
    credits = {line.account: line.credit_minor for line in entry["lines"] if line.credit_minor}
    assert sum(debits.values()) == sum(credits.values())
    assert debits.keys() == {"1210"}
    assert 2600 <= debits["1210"] <= 2700
    [tracked] = fakes.analytics.records.values()
    assert tracked["event"] == "Subscription Amended"
    assert tracked["properties"]["contract_value_minor"] == 72000
    assert tracked["properties"]["previous_contract_value_minor"] == 24000
    async with sessionmaker() as session:
        outputs = {
            row.name: row.output or {}
            for row in await session.scalars(
                select(WorkflowStep).where(WorkflowStep.correlation_id == early)
            )
        }
    assert outputs["erp.read_dimensions"]["subsidiary_from"] == "mappings v1"
    assert outputs["erp.post_proration"]["amount_minor"] == debits["1210"]
    assert tracked["properties"]["crm_company_id"] == outputs["crm.read_account"]["company_id"]


async def test_amendment_failing_in_the_erp_restores_the_crm_value(
    system: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    fakes, deliver = system.fakes, system.deliver
    sub = fixture_subscription()
    await deliver(_created())
    fakes.erp.fail["upsert_contract"] = [Terminal("period closed", http_status=400)]

    cid, outcome = await deliver(_tripled(sub))

    assert outcome is Outcome.REVERSED
    assert (await _tx(sessionmaker, cid)).state is TxState.REVERSED
    assert fakes.crm.records[("deal", sub["id"])]["amount"] == 24000
    assert [op for op in fakes.crm.ops() if op == "upsert_contract"] == ["upsert_contract"] * 3
    steps = await _steps(sessionmaker, cid)
    assert steps == {
        "crm.read_account": StepState.SUCCEEDED,
        "erp.read_dimensions": StepState.SUCCEEDED,
        "crm.update_contract": StepState.COMPENSATED,
        "erp.post_proration": StepState.COMPENSATED,
        "erp.amend_contract": StepState.FAILED_TERMINAL,
    }
    [item] = await _exceptions(sessionmaker)
    assert item.status is ExceptionStatus.OPEN
    assert "undone" in (item.suggested_action or "")
    # The proration stands reversed by an entry of its own, debit and credit swapped.
    entries = {k[1]: r for k, r in fakes.erp.records.items() if k[0] == "journalentry"}
    [posted] = [k for k in entries if not k.endswith(":reversal")]
    reversal = entries[f"{posted}:reversal"]
    assert [(x.account, x.debit_minor, x.credit_minor) for x in reversal["lines"]] == [
        (x.account, x.credit_minor, x.debit_minor) for x in entries[posted]["lines"]
    ]
    assert not fakes.analytics.records


async def test_amendment_with_analytics_refusing_keeps_the_contract_change(
    system: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    fakes, deliver = system.fakes, system.deliver
    sub = fixture_subscription()
    await deliver(_created())
    fakes.analytics.fail["track"] = [Terminal("write key revoked", http_status=401)]

    cid, outcome = await deliver(_tripled(sub))

    assert outcome is Outcome.EXCEPTION
    assert fakes.crm.records[("deal", sub["id"])]["amount"] == 72000
    assert fakes.erp.records[("contract", sub["id"])]["value"] == 72000
    assert not any(k[1].endswith(":reversal") for k in fakes.erp.records)
    steps = await _steps(sessionmaker, cid)
    assert steps["crm.update_contract"] is StepState.SUCCEEDED
    assert steps["analytics.track_amendment"] is StepState.FAILED_TERMINAL
    [item] = await _exceptions(sessionmaker)
    assert "replay from analytics.track_amendment" in (item.suggested_action or "")

    # The replay runs the analytics step alone, with the account context the first run read,
    # under the first run's messageId (Segment dedupes it; it cannot be asked what it holds).
    async with sessionmaker.begin() as session:
        await actions.start_replay(
            session,
            cid,
            requested_by="ops@example.com",
            reason="write key rotated",
            now=datetime.now(UTC),
            from_step="analytics.track_amendment",
        )
    assert await system.settle(cid) is Outcome.POSTED
    [(key, tracked)] = fakes.analytics.records.items()
    assert key == ("track", f"{cid}:analytics.track_amendment")
    assert tracked["properties"]["crm_company_id"]
    assert [op for op in fakes.crm.ops() if op == "account"] == ["account"]
    assert [op for op in fakes.erp.ops() if op == "post_journal"] == ["post_journal"]


async def test_amendment_at_the_end_of_its_period_prorates_to_nothing(
    system: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    fakes, deliver = system.fakes, system.deliver
    ended = int(time.time()) - 3600
    sub = fixture_subscription(current_period_start=ended - 30 * 86400, current_period_end=ended)
    await deliver(_created(current_period_start=ended - 30 * 86400, current_period_end=ended))

    cid, outcome = await deliver(_tripled(sub))

    assert outcome is Outcome.POSTED
    assert (await _steps(sessionmaker, cid))["erp.post_proration"] is StepState.SKIPPED
    assert not [k for k in fakes.erp.records if k[0] == "journalentry"]
    assert fakes.erp.records[("contract", sub["id"])]["value"] == 72000


async def test_update_without_plan_or_quantity_change_is_ignored() -> None:
    event = subscription_event(
        "customer.subscription.updated", previous_attributes={"metadata": {"foo": None}}
    )

    decision = stripe_events.route(event)

    assert decision.reason == "the update changes neither plan nor quantity"  # type: ignore[union-attr]


async def test_cancellation_closes_everything(system: Harness) -> None:
    fakes, deliver = system.fakes, system.deliver
    sub_id = fixture_subscription()["id"]
    await deliver(_created())

    _, outcome = await deliver(
        subscription_event(
            "customer.subscription.deleted", subscription=fixture_subscription(status="canceled")
        )
    )

    assert outcome is Outcome.POSTED
    assert fakes.crm.records[("deal", sub_id)]["amount"] == 0
    assert fakes.erp.records[("contract", sub_id)]["ended"] is True
    assert fakes.provisioning.records[("tenant", sub_id)]["enabled"] is False


async def test_cancellation_with_the_erp_down_exhausts_its_budget(
    system: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    fakes, deliver = system.fakes, system.deliver
    await deliver(_created())
    fakes.erp.fail["end_contract"] = [Retryable("503", http_status=503) for _ in range(10)]

    _, outcome = await deliver(
        subscription_event(
            "customer.subscription.deleted", subscription=fixture_subscription(status="canceled")
        )
    )

    assert outcome is Outcome.EXCEPTION
    assert [i.classification for i in await _exceptions(sessionmaker)] == ["retry_budget_exhausted"]


async def test_paid_before_finalized_waits_then_applies(system: Harness) -> None:
    fakes, deliver = system.fakes, system.deliver
    invoice = new_invoice(status="paid", amount_paid=1000)
    now = int(time.time())
    paid = stripe_event("invoice.paid", invoice=invoice)
    paid["created"] = now
    finalized = stripe_event("invoice.finalized", invoice=invoice)
    finalized["created"] = now - 5

    paid_cid, first = await deliver(paid)
    _, posted = await deliver(finalized)
    assert first is Outcome.WAITING
    assert posted is Outcome.POSTED
    assert await system.settle(paid_cid) is Outcome.POSTED
    assert ("payment", invoice["id"]) in fakes.erp.records
    assert ("task", f"paid:{invoice['id']}") in fakes.crm.records


async def test_paid_invoice_with_a_refusing_crm_is_an_exception(system: Harness) -> None:
    fakes, deliver = system.fakes, system.deliver
    invoice = new_invoice(status="paid", amount_paid=1000)
    await deliver(stripe_event("invoice.finalized", invoice=invoice))
    fakes.crm.fail["create_task"] = [Terminal("company archived", http_status=400)]

    _, outcome = await deliver(stripe_event("invoice.paid", invoice=invoice))

    assert outcome is Outcome.EXCEPTION
    assert ("payment", invoice["id"]) in fakes.erp.records


async def test_failed_payment_notifies_crm_support_and_dunning(system: Harness) -> None:
    fakes, deliver = system.fakes, system.deliver
    invoice = new_invoice(attempt_count=1)

    _, outcome = await deliver(stripe_event("invoice.payment_failed", invoice=invoice))

    assert outcome is Outcome.POSTED
    assert fakes.crm.records[("task", f"payment_failed:{invoice['id']}:1")]["subject"] == (
        "Payment failed: cus_QXg1o8vcGmoR32"
    )
    assert fakes.support.records[("ticket", f"payment_failed:{invoice['id']}:1")]
    dunning = fakes.crm.records[("task", f"dunning:{invoice['id']}:1")]
    assert dunning["due"] == datetime.fromtimestamp(FIXTURE_INVOICE["next_payment_attempt"], UTC)


async def test_failed_payment_with_support_down_gives_up_within_its_real_time_budget(
    system: Harness,
) -> None:
    fakes, deliver = system.fakes, system.deliver
    fakes.support.fail["open_ticket"] = [Retryable("down", http_status=502) for _ in range(10)]

    _, outcome = await deliver(stripe_event("invoice.payment_failed", invoice=new_invoice()))

    assert outcome is Outcome.EXCEPTION
    # The real-time policy allows 4 attempts, not the default 5.
    assert fakes.support.ops().count("open_ticket") == 4
    assert fakes.crm.ops() == ["create_task", "create_task"]


async def test_paid_and_finalized_in_the_same_second_do_not_wait_on_each_other(
    system: Harness,
) -> None:
    # Stripe stamps whole seconds: a payment taken at finalization carries the same time.
    invoice = new_invoice(status="paid", amount_paid=1000)
    paid = stripe_event("invoice.paid", invoice=invoice)
    finalized = stripe_event("invoice.finalized", invoice=invoice)
    finalized["created"] = paid["created"]

    paid_cid, first = await system.deliver(paid)
    _, posted = await system.deliver(finalized)

    assert (first, posted) == (Outcome.WAITING, Outcome.POSTED)
    assert await system.settle(paid_cid) is Outcome.POSTED


async def test_renewal_risk_gives_customer_success_a_task_with_billing_context(
    system: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    fakes = system.fakes
    sub_id = fixture_subscription()["id"]
    await system.deliver(_created())
    event = {
        "eventId": 991,
        "subscriptionType": "deal.propertyChange",
        "objectId": 42,
        "propertyName": "renewal_risk",
        "propertyValue": "high",
        "portalId": 62515,
        "occurredAt": int(time.time() * 1000),
        "sourceId": sub_id,
    }
    decision = hubspot_events.route(event)
    async with sessionmaker.begin() as session:
        result = await inbox.record_event(
            session,
            incoming_event(
                source="hubspot",
                source_event_id="991",
                event_type=hubspot_events.event_type(event),
                payload=event,
                decision=decision,
                source_system=System.CRM,
            ),
        )

    assert await system.settle(result.correlation_id) is Outcome.POSTED
    [task] = [
        v
        for (kind, key), v in fakes.crm.records.items()
        if kind == "task" and key.startswith("renewal_risk:42:")
    ]
    assert task["subject"] == "Renewal risk (high) on deal 42"
    assert task["body"].startswith(f"Subscription {sub_id}: contract value 24000 USD a year")

    flag = fakes.billing.records[("subscription", sub_id)]
    assert (flag["renewal_risk"], flag["renewal_risk_deal"]) == ("high", "42")


async def _hubspot(
    sessionmaker: async_sessionmaker[AsyncSession], system: Harness, event: dict[str, Any]
) -> tuple[str, Outcome]:
    decision = hubspot_events.route(event)
    async with sessionmaker.begin() as session:
        result = await inbox.record_event(
            session,
            incoming_event(
                source="hubspot",
                source_event_id=str(event["eventId"]),
                event_type=hubspot_events.event_type(event),
                payload=event,
                decision=decision,
                source_system=System.CRM,
            ),
        )
    return result.correlation_id, await system.settle(result.correlation_id)


def _won(deal_id: int, event_id: int) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "subscriptionType": "deal.propertyChange",
        "objectId": deal_id,
        "propertyName": "dealstage",
        "propertyValue": "closedwon",
        "portalId": 62515,
        "occurredAt": int(time.time() * 1000),
    }


def _sales_entered(crm: Any, *, tax_region: str = "UK") -> None:
    """Deal 7 for company 70 (under parent 71, which sets the terms), one line item 700."""
    crm.objects.update(
        {
            ("deals", "7"): CrmObject(
                "deals",
                "7",
                {"dealname": "Pro", "deal_currency_code": "GBP"},
                {"companies": [("70", "deal_to_company")], "line_items": [("700", "x")]},
            ),
            ("companies", "70"): CrmObject(
                "companies",
                "70",
                {"name": "Acme Ltd"},
                {"companies": [("71", "child_to_parent_company")]},
            ),
            ("companies", "71"): CrmObject(
                "companies",
                "71",
                {"name": "Acme", "tax_region": tax_region, "payment_terms": "net_15"},
                {"companies": [("70", "parent_to_child_company")]},
            ),
            ("line_items", "700"): CrmObject(
                "line_items", "700", {"hs_product_id": "9003", "quantity": "2"}
            ),
        }
    )


async def test_a_won_deal_creates_its_customer_and_subscription_in_billing(
    system: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    fakes = system.fakes
    _sales_entered(fakes.crm)

    cid, outcome = await _hubspot(sessionmaker, system, _won(7, 5001))

    assert outcome is Outcome.POSTED
    assert fakes.billing.records[("customer", "crm-company-70")]["name"] == "Acme Ltd"
    sub = fakes.billing.records[("subscription", "crm-deal-7")]
    assert sub["plans"] == [("pro_annual", 2)]
    assert sub["days_until_due"] == 15
    assert sub["metadata"]["tax_code"] == "UK-VAT-20"
    assert sub["metadata"]["legal_entity"] == "concord_uk"
    assert sub["metadata"]["crm_parent_companies"] == "71"
    assert set((await _steps(sessionmaker, cid)).values()) == {StepState.SUCCEEDED}


async def test_a_won_deal_after_a_lost_answer_is_found_not_created_again(
    system: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    fakes = system.fakes
    _sales_entered(fakes.crm)
    fakes.billing.commit_before_fail = True
    fakes.billing.fail["create_subscription"] = [Retryable("connection reset")]

    _, outcome = await _hubspot(sessionmaker, system, _won(7, 5002))

    assert outcome is Outcome.POSTED
    assert fakes.billing.ops().count("create_subscription") == 1
    assert [k for k in fakes.billing.records if k[0] == "subscription"] == [
        ("subscription", "crm-deal-7")
    ]


async def test_a_won_deal_with_an_unmapped_tax_region_is_an_exception_naming_it(
    system: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    fakes = system.fakes
    _sales_entered(fakes.crm, tax_region="ATLANTIS")

    cid, outcome = await _hubspot(sessionmaker, system, _won(7, 5003))

    assert outcome is Outcome.EXCEPTION
    assert (await _steps(sessionmaker, cid))["crm.validate_deal"] is StepState.FAILED_TERMINAL
    [item] = await _exceptions(sessionmaker)
    assert item.message == (
        "crm.validate_deal: deal 7: company 70: mapping missing: tax_regions.ATLANTIS (mappings v1)"
    )
    assert "create_subscription" not in fakes.billing.ops()


async def test_renewal_risk_on_a_deal_without_a_subscription_is_an_exception(
    system: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    event = {
        "eventId": 992,
        "subscriptionType": "deal.propertyChange",
        "objectId": 43,
        "propertyName": "renewal_risk",
        "propertyValue": "medium",
        "portalId": 62515,
        "occurredAt": int(time.time() * 1000),
    }

    cid, outcome = await _hubspot(sessionmaker, system, event)

    assert outcome is Outcome.EXCEPTION
    steps = await _steps(sessionmaker, cid)
    assert steps["billing.flag_subscription"] is StepState.FAILED_TERMINAL
    [item] = await _exceptions(sessionmaker)
    assert "deal 43 names no billing subscription" in item.message
