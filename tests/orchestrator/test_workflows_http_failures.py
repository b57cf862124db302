"""Every workflow's main failure path over HTTP, with faults injected through the sandbox's own
fault controller (/_admin/faults): a terminal 4xx, a retry budget run out against 5xx, and the
amendment's compensation when the ERP refuses after the CRM was updated."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.factories import (
    fixture_subscription,
    new_invoice,
    stripe_event,
    subscription_event,
    with_quantity,
)
from tests.support.concord_http import (
    Concord,
    by_type,
    created_event,
    renewal_risk_event,
    steps_of,
)

SUB = fixture_subscription()
SUB_ID = str(SUB["id"])
# The worker_settings fixture allows 5 attempts; payment failed's real-time policy allows 4.
DEFAULT_ATTEMPTS, REAL_TIME_ATTEMPTS = 5, 4


# Each trigger delivers what its workflow needs first (without faults), then returns the event
# that meets the fault.
Trigger = Callable[[Concord], Awaitable[dict[str, Any]]]


async def _activated(concord: Concord) -> None:
    await concord.stripe(created_event())
    await concord.run_workers()


async def _activation(_concord: Concord) -> dict[str, Any]:
    return created_event()


async def _cancellation(concord: Concord) -> dict[str, Any]:
    await _activated(concord)
    return subscription_event(
        "customer.subscription.deleted", subscription=fixture_subscription(status="canceled")
    )


async def _amendment(concord: Concord) -> dict[str, Any]:
    await _activated(concord)
    return subscription_event(
        "customer.subscription.updated",
        subscription=with_quantity(SUB, 3),
        previous_attributes={"items": SUB["items"]},
    )


async def _finalized(_concord: Concord) -> dict[str, Any]:
    return stripe_event("invoice.finalized", invoice=new_invoice())


async def _paid(concord: Concord) -> dict[str, Any]:
    invoice = new_invoice(status="paid", amount_paid=1000)
    await concord.stripe(stripe_event("invoice.finalized", invoice=invoice))
    await concord.run_workers()
    return stripe_event("invoice.paid", invoice=invoice)


async def _payment_failed(_concord: Concord) -> dict[str, Any]:
    return stripe_event("invoice.payment_failed", invoice=new_invoice(attempt_count=1))


@dataclass(frozen=True)
class Failure:
    trigger: Trigger
    faults: str
    step: str
    classification: str
    statuses: list[int]

    @property
    def exhausted(self) -> bool:
        return self.classification == "retry_budget_exhausted"


FAILURES = {
    "activated/provisioning refuses": Failure(
        _activation, "provisioning.tenants:422=1", "provisioning.enable_tenant", "validation", [422]
    ),
    "activated/erp down": Failure(
        _activation,
        "erp.revenueplan:503=1",
        "erp.upsert_contract",
        "retry_budget_exhausted",
        [503] * DEFAULT_ATTEMPTS,
    ),
    "canceled/erp refuses": Failure(
        _cancellation, "erp.revenueplan:422=1", "erp.end_contract", "validation", [422]
    ),
    "canceled/erp down": Failure(
        _cancellation,
        "erp.revenueplan:500=1",
        "erp.end_contract",
        "retry_budget_exhausted",
        [500] * DEFAULT_ATTEMPTS,
    ),
    "amended/crm refuses": Failure(
        _amendment, "crm.deals:422=1", "crm.update_contract", "validation", [422]
    ),
    "generated/erp refuses": Failure(
        _finalized, "erp.invoice:422=1", "erp.post_invoice", "validation", [422]
    ),
    "generated/erp down": Failure(
        _finalized,
        "erp.invoice:502=1",
        "erp.post_invoice",
        "retry_budget_exhausted",
        [502] * DEFAULT_ATTEMPTS,
    ),
    "paid/crm refuses": Failure(
        _paid, "crm.tasks:422=1", "crm.record_payment", "validation", [422]
    ),
    "paid/erp down": Failure(
        _paid,
        "erp.customerpayment:503=1",
        "erp.apply_payment",
        "retry_budget_exhausted",
        [503] * DEFAULT_ATTEMPTS,
    ),
    "payment failed/support down": Failure(
        _payment_failed,
        "support.tickets:502=1",
        "support.open_ticket",
        "retry_budget_exhausted",
        [502] * REAL_TIME_ATTEMPTS,
    ),
    "payment failed/support refuses": Failure(
        _payment_failed, "support.tickets:422=1", "support.open_ticket", "validation", [422]
    ),
}


@pytest.mark.parametrize("case", FAILURES.values(), ids=FAILURES.keys())
async def test_failure_becomes_an_exception_with_its_lineage(
    concord: Concord, case: Failure
) -> None:
    event = await case.trigger(concord)
    await concord.set_faults(case.faults)

    answer = await concord.stripe(event)
    await concord.run_workers()

    cid = answer["correlation_id"]
    detail = await concord.transaction(cid)
    assert detail["state"] == "exception"
    step = steps_of(detail)[case.step]
    assert step["state"] == "failed_terminal"
    assert [a["http_status"] for a in step["attempts"]] == case.statuses
    assert {a["outcome"] for a in step["attempts"]} == {"failed"}
    # Terminal errors stop after one attempt; retryable ones until the budget is spent.
    assert step["error_class"] == ("retryable" if case.exhausted else "terminal")
    [item] = [e for e in await concord.open_exceptions() if e["correlation_id"] == cid]
    assert item["classification"] == case.classification
    assert case.step in item["message"]
    if case.exhausted:
        assert "retry budget exhausted" in item["message"]
    else:
        assert "injected fault" in item["message"]


async def test_renewal_risk_with_a_refusing_crm_is_an_exception(concord: Concord) -> None:
    billing = await concord.billing_subscription()
    await concord.stripe(created_event(id=billing["id"], customer=billing["customer"]))
    await concord.run_workers()
    await concord.set_faults("crm.tasks:422=1")

    [answer] = await concord.hubspot([renewal_risk_event(billing["id"])])
    await concord.run_workers()

    detail = await concord.transaction(answer["correlation_id"])
    assert detail["state"] == "exception"
    step = steps_of(detail)["crm.create_success_task"]
    assert [a["http_status"] for a in step["attempts"]] == [422]
    [item] = await concord.open_exceptions()
    assert item["correlation_id"] == answer["correlation_id"]
    assert item["classification"] == "validation"
    assert "tasks" not in by_type(await concord.ledger("crm"))


async def test_amendment_refused_by_the_erp_restores_the_crm_contract_value(
    concord: Concord,
) -> None:
    event = await _amendment(concord)
    assert (await concord.crm_object("deals", SUB_ID))["properties"]["amount"] == "240.00"
    await concord.set_faults("erp.revenueplan:422=1")

    answer = await concord.stripe(event)
    await concord.run_workers()

    detail = await concord.transaction(answer["correlation_id"])
    assert detail["state"] == "reversed"
    steps = steps_of(detail)
    assert {name: s["state"] for name, s in steps.items()} == {
        "crm.read_account": "succeeded",
        "erp.read_dimensions": "succeeded",
        "crm.update_contract": "compensated",
        "erp.post_proration": "compensated",
        "erp.amend_contract": "failed_terminal",
    }
    assert [a["http_status"] for a in steps["erp.amend_contract"]["attempts"]] == [422]
    # The CRM saw the new value and then the old one again; the ERP kept only the first plan,
    # and the proration stands next to the entry that reverses it.
    deal = (await concord.crm_object("deals", SUB_ID))["properties"]
    assert (deal["amount"], deal["dealstage"]) == ("240.00", "closedwon")
    erp = by_type(await concord.ledger("erp"))
    assert [p["total"] for p in erp["revenueplan"]] == [240.0]
    entries = {e["external_id"]: e for e in erp["journalentry"]}
    [posted] = [k for k in entries if not k.endswith(":reversal")]
    assert entries[f"{posted}:reversal"]["total"] == entries[posted]["total"]
    assert {e["create_calls"] for e in entries.values()} == {1}
    assert not await concord.ledger("analytics")
    [item] = await concord.open_exceptions()
    assert item["correlation_id"] == answer["correlation_id"]
    assert "undone" in (item["suggested_action"] or "")


async def _settled_invoice(concord: Concord) -> dict[str, Any]:
    invoice = new_invoice()
    await concord.stripe(stripe_event("invoice.finalized", invoice=invoice))
    await concord.run_workers()
    return invoice


async def _posted_after_lost_answers(
    concord: Concord, faults: str, event: dict[str, Any], *, looked_up: tuple[str, ...]
) -> dict[str, dict[str, Any]]:
    """Deliver `event` while `faults` drop the targets' answers after they commit (the outcome
    is unknown to the worker); the transaction must post, each `looked_up` step after one failed
    attempt and one lookup that found what the first attempt created. Returns its steps."""
    await concord.set_faults(faults)
    answer = await concord.stripe(event)
    await concord.run_workers()

    detail = await concord.transaction(answer["correlation_id"])
    assert detail["state"] == "posted", detail
    steps = steps_of(detail)
    for name in looked_up:
        outcomes = [a["outcome"] for a in steps[name]["attempts"]]
        assert outcomes == ["failed", "found_existing"], (name, outcomes)
    return steps


async def test_a_contract_version_whose_answer_was_lost_is_looked_up_not_posted_again(
    concord: Concord,
) -> None:
    steps = await _posted_after_lost_answers(
        concord,
        "erp.revenueplan:drop_after_commit=1",
        created_event(),
        looked_up=("erp.upsert_contract",),
    )
    step = steps["erp.upsert_contract"]
    assert step["external_id"].startswith(f"contract:{SUB_ID}:")
    [plan] = by_type(await concord.ledger("erp"))["revenueplan"]
    assert (plan["external_id"], plan["create_calls"]) == (step["external_id"], 1)


async def test_a_payment_whose_answer_was_lost_is_looked_up_not_applied_again(
    concord: Concord,
) -> None:
    invoice = await _settled_invoice(concord)
    steps = await _posted_after_lost_answers(
        concord,
        "erp.customerpayment:drop_after_commit=1",
        stripe_event("invoice.paid", invoice=invoice),
        looked_up=("erp.apply_payment",),
    )
    [payment] = by_type(await concord.ledger("erp"))["customerpayment"]
    assert (payment["external_id"], payment["create_calls"]) == (
        steps["erp.apply_payment"]["external_id"],
        1,
    )


async def test_a_ticket_and_tasks_whose_answers_were_lost_are_looked_up_not_opened_again(
    concord: Concord,
) -> None:
    invoice = await _settled_invoice(concord)
    steps = await _posted_after_lost_answers(
        concord,
        "support.tickets:drop_after_commit=1,crm.tasks:drop_after_commit=1",
        stripe_event("invoice.payment_failed", invoice=invoice),
        looked_up=("crm.flag_account", "support.open_ticket", "crm.schedule_dunning"),
    )
    tickets = by_type(await concord.ledger("support"))["ticket"]
    assert [(t["external_id"], t["create_calls"]) for t in tickets] == [
        (steps["support.open_ticket"]["external_id"], 1)
    ]
    tasks = {
        t["external_id"]: t["create_calls"] for t in by_type(await concord.ledger("crm"))["tasks"]
    }
    assert tasks == {
        steps["crm.flag_account"]["external_id"]: 1,
        steps["crm.schedule_dunning"]["external_id"]: 1,
    }
