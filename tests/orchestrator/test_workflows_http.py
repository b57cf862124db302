"""Every workflow's happy path over HTTP: signed webhooks in, a real arq worker, the sandbox
systems as targets, effects read from their ledgers and vendor APIs, lineage from the API.

The main failure paths are in test_workflows_http_failures.py.
"""

import json
import time
from typing import Any

from lineage.enums import Role
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
CUSTOMER = "cus_QXg1o8vcGmoR32"


def _assert_all_succeeded_once(detail: dict[str, Any], expected: set[str]) -> None:
    """Every step ran once, under the idempotency key correlation_id:step."""
    steps = steps_of(detail)
    assert set(steps) == expected
    for name, step in steps.items():
        assert step["state"] == "succeeded", (name, step)
        assert step["idempotency_key"] == f"{detail['correlation_id']}:{name}"
        assert [a["outcome"] for a in step["attempts"]] == ["succeeded"]


async def test_activation_reaches_crm_erp_and_provisioning(concord: Concord) -> None:
    answer = await concord.stripe(created_event())

    await concord.run_workers()

    detail = await concord.transaction(answer["correlation_id"])
    assert detail["state"] == "posted"
    _assert_all_succeeded_once(
        detail,
        {
            "crm.upsert_account",
            "crm.upsert_contract",
            "erp.upsert_customer",
            "erp.upsert_contract",
            "provisioning.enable_tenant",
        },
    )
    # The fixture's item: 2000 minor units a month, quantity 1, so 240.00 USD a year.
    deal = (await concord.crm_object("deals", SUB_ID))["properties"]
    assert (deal["amount"], deal["dealstage"]) == ("240.00", "closedwon")
    assert await concord.crm_object("companies", CUSTOMER)
    erp = by_type(await concord.ledger("erp"))
    assert [r["external_id"] for r in erp["customer"]] == [CUSTOMER]
    [plan] = erp["revenueplan"]
    assert (plan["total"], plan["create_calls"]) == (240.0, 1)
    tenant = (await concord.vendor(f"/provisioning/v1/tenants/{SUB_ID}")).json()
    assert tenant["tenant"]["enabled"] is True
    refs = {(r["system"], r["object_type"]) for r in detail["external_refs"]}
    assert {("crm", "deals"), ("erp", "revenueplan"), ("provisioning", "tenant")} <= refs


async def test_two_amendments_within_one_second_post_two_prorations(concord: Concord) -> None:
    await concord.stripe(created_event())
    await concord.run_workers()
    # Stripe stamps events in whole seconds: both changes carry the same `created`.
    second = int(time.time())
    three, five = with_quantity(SUB, 3), with_quantity(SUB, 5)

    for before, after in ((SUB, three), (three, five)):
        answer = await concord.stripe(
            subscription_event(
                "customer.subscription.updated",
                subscription=after,
                previous_attributes={"items": before["items"]},
                created=second,
            )
        )
        await concord.run_workers()
        detail = await concord.transaction(answer["correlation_id"])
        assert detail["state"] == "posted", detail
        outcomes = [a["outcome"] for a in steps_of(detail)["erp.post_proration"]["attempts"]]
        assert outcomes == ["succeeded"]

    entries = by_type(await concord.ledger("erp"))["journalentry"]
    assert len({e["external_id"] for e in entries}) == 2, entries
    assert [e["create_calls"] for e in entries] == [1, 1]
    deal = (await concord.crm_object("deals", SUB_ID))["properties"]
    assert deal["amount"] == "1200.00"


async def test_amendment_updates_crm_then_erp(concord: Concord) -> None:
    await concord.stripe(created_event())
    await concord.run_workers()

    answer = await concord.stripe(
        subscription_event(
            "customer.subscription.updated",
            subscription=with_quantity(SUB, 3),
            previous_attributes={"items": SUB["items"]},
        )
    )
    await concord.run_workers()

    detail = await concord.transaction(answer["correlation_id"])
    assert detail["state"] == "posted", detail
    _assert_all_succeeded_once(
        detail,
        {
            "crm.read_account",
            "erp.read_dimensions",
            "crm.update_contract",
            "erp.post_proration",
            "erp.amend_contract",
            "analytics.track_amendment",
        },
    )
    steps = steps_of(detail)
    chains = [
        ("crm.read_account", "crm.update_contract", "erp.post_proration"),
        ("erp.read_dimensions", "erp.post_proration", "erp.amend_contract"),
        ("erp.amend_contract", "analytics.track_amendment"),
    ]
    for chain in chains:
        for before, after in zip(chain, chain[1:], strict=False):
            assert steps[before]["ended_at"] <= steps[after]["started_at"], (before, after)
    deal = (await concord.crm_object("deals", SUB_ID))["properties"]
    assert (deal["amount"], deal["renewal_baseline"]) == ("720.00", "720.00")
    # A new contract version sits next to the first one; nothing was posted twice.
    erp = by_type(await concord.ledger("erp"))
    plans = erp["revenueplan"]
    assert sorted(p["total"] for p in plans) == [240.0, 720.0]
    assert {p["create_calls"] for p in plans} == {1}
    # The proration (two more seats for two thirds of the period) as one balanced journal
    # entry, booked to the subsidiary the ERP's customer master names.
    [entry] = erp["journalentry"]
    assert entry["create_calls"] == 1
    assert entry["external_id"].startswith(f"proration:{SUB_ID}:")
    posted = (
        await concord.vendor(f"/erp/record/v1/journalentry/eid:{entry['external_id']}")
    ).json()
    assert posted["subsidiary"] == {"id": "1"}
    lines = posted["line"]["items"]
    debit = sum(float(x.get("debit") or 0) for x in lines)
    assert debit == sum(float(x.get("credit") or 0) for x in lines)
    assert 26.0 <= debit <= 27.0
    assert {x["account"]["id"] for x in lines if x.get("debit")} == {"1210"}
    # Lineage shows what the enrichment read and what the proration decided.
    dimensions = steps["erp.read_dimensions"]["output"]
    assert (dimensions["subsidiary"], dimensions["subsidiary_from"]) == ("1", "erp")
    assert steps["erp.post_proration"]["output"]["amount_minor"] == round(debit * 100)
    # Analytics heard of it once, with the CRM account context.
    answered = await concord.vendor("/analytics/_admin/events", event="Subscription Amended")
    [event] = answered.json()["events"]
    assert event["messageId"] == f"{detail['correlation_id']}:analytics.track_amendment"
    assert event["properties"]["contract_value_minor"] == 72000
    company = steps["crm.read_account"]["attempts"][0]["target_ref"]
    assert event["properties"]["crm_company_id"] == company


async def test_cancellation_closes_crm_erp_and_tenant(concord: Concord) -> None:
    await concord.stripe(created_event())
    await concord.run_workers()

    answer = await concord.stripe(
        subscription_event(
            "customer.subscription.deleted", subscription=fixture_subscription(status="canceled")
        )
    )
    await concord.run_workers()

    detail = await concord.transaction(answer["correlation_id"])
    assert detail["state"] == "posted", detail
    _assert_all_succeeded_once(
        detail, {"crm.close_contract", "erp.end_contract", "provisioning.disable_tenant"}
    )
    deal = (await concord.crm_object("deals", SUB_ID))["properties"]
    assert (deal["amount"], deal["dealstage"]) == ("0.00", "closedlost")
    ended = await concord.vendor(f"/erp/record/v1/revenueplan/eid:contract:{SUB_ID}:ended")
    assert ended.status_code == 200, ended.text
    tenant = (await concord.vendor(f"/provisioning/v1/tenants/{SUB_ID}")).json()
    assert tenant["tenant"]["enabled"] is False


async def test_finalized_invoice_is_posted_to_the_erp(concord: Concord) -> None:
    invoice = new_invoice()

    answer = await concord.stripe(stripe_event("invoice.finalized", invoice=invoice))
    await concord.run_workers()

    detail = await concord.transaction(answer["correlation_id"])
    assert detail["state"] == "posted"
    _assert_all_succeeded_once(detail, {"erp.post_invoice"})
    [record] = by_type(await concord.ledger("erp"))["invoice"]
    assert (record["external_id"], record["total"], record["create_calls"]) == (
        invoice["id"],
        10.0,
        1,
    )
    found = await concord.vendor(f"/erp/record/v1/invoice/eid:{invoice['id']}")
    assert found.status_code == 200, found.text


async def test_paid_invoice_applies_the_payment_then_tells_the_crm(concord: Concord) -> None:
    invoice = new_invoice(status="paid", amount_paid=1000)
    await concord.stripe(stripe_event("invoice.finalized", invoice=invoice))
    await concord.run_workers()

    answer = await concord.stripe(stripe_event("invoice.paid", invoice=invoice))
    await concord.run_workers()

    detail = await concord.transaction(answer["correlation_id"])
    assert detail["state"] == "posted"
    _assert_all_succeeded_once(detail, {"erp.apply_payment", "crm.record_payment"})
    [payment] = by_type(await concord.ledger("erp"))["customerpayment"]
    assert (payment["external_id"], payment["total"]) == (f"payment:{invoice['id']}", 10.0)
    task = (await concord.crm_object("tasks", f"paid:{invoice['id']}"))["properties"]
    assert task["hs_task_subject"] == f"Invoice {invoice['id']} paid"


async def test_failed_payment_flags_the_account_opens_a_ticket_and_schedules_dunning(
    concord: Concord,
) -> None:
    invoice = new_invoice(attempt_count=1)

    answer = await concord.stripe(stripe_event("invoice.payment_failed", invoice=invoice))
    await concord.run_workers()

    detail = await concord.transaction(answer["correlation_id"])
    assert detail["state"] == "posted"
    _assert_all_succeeded_once(
        detail, {"crm.flag_account", "support.open_ticket", "crm.schedule_dunning"}
    )
    flag = (await concord.crm_object("tasks", f"payment_failed:{invoice['id']}:1"))["properties"]
    assert flag["hs_task_subject"] == f"Payment failed: {CUSTOMER}"
    assert await concord.crm_object("tasks", f"dunning:{invoice['id']}:1")
    tickets = (
        await concord.vendor(
            "/support/api/v2/tickets", external_id=f"payment_failed:{invoice['id']}:1"
        )
    ).json()["tickets"]
    assert len(tickets) == 1


async def test_renewal_risk_from_hubspot_flags_billing_and_tasks_customer_success(
    concord: Concord,
) -> None:
    billing = await concord.billing_subscription()
    await concord.stripe(created_event(id=billing["id"], customer=billing["customer"]))
    await concord.run_workers()

    [answer] = await concord.hubspot([renewal_risk_event(billing["id"])])
    await concord.run_workers()

    detail = await concord.transaction(answer["correlation_id"])
    assert detail["state"] == "posted"
    _assert_all_succeeded_once(detail, {"crm.create_success_task", "billing.flag_subscription"})
    [task] = [
        r
        for r in by_type(await concord.ledger("crm"))["tasks"]
        if r["external_id"].startswith("renewal_risk:42:")
    ]
    props = (await concord.crm_object("tasks", task["external_id"]))["properties"]
    assert props["hs_task_subject"] == "Renewal risk (high) on deal 42"
    assert props["hs_task_body"].startswith(
        f"Subscription {billing['id']}: contract value 24000 USD"
    )
    [flagged] = await concord.billing_search("metadata['renewal_risk']:'high'")
    assert (flagged["id"], flagged["metadata"]["renewal_risk_deal"]) == (billing["id"], "42")


async def test_renewal_risk_from_an_analytics_signal_reaches_cs_and_billing(
    concord: Concord, api_keys: dict[Role, str]
) -> None:
    billing = await concord.billing_subscription()
    await concord.stripe(created_event(id=billing["id"], customer=billing["customer"]))
    await concord.run_workers()
    signal = {
        "specversion": "1.0",
        "id": "risk-0001",
        "source": "/analytics/churn-model",
        "type": "com.concord.renewal_risk.identified",
        "time": "2026-11-20T09:00:00Z",
        "datacontenttype": "application/json",
        "data": {
            "subscription_id": billing["id"],
            "risk": "medium",
            "reason": "seats used fell 40% in 30 days",
            "occurred_at": "2026-11-20T09:00:00Z",
        },
    }

    response = await concord.api.post(
        "/v1/events",
        content=json.dumps(signal),
        headers={
            "Authorization": f"Bearer {api_keys[Role.INGEST]}",
            "Content-Type": "application/cloudevents+json",
        },
    )
    assert response.status_code == 202, response.text
    await concord.run_workers()

    detail = await concord.transaction(response.json()["correlation_id"])
    assert (detail["workflow"], detail["state"]) == ("renewal_risk", "posted")
    [task] = [
        r
        for r in by_type(await concord.ledger("crm"))["tasks"]
        if r["external_id"].startswith(f"renewal_risk:{billing['id']}:")
    ]
    props = (await concord.crm_object("tasks", task["external_id"]))["properties"]
    assert props["hs_task_subject"] == f"Renewal risk (medium) on deal {billing['id']}"
    assert props["hs_task_body"].endswith("Why it was flagged: seats used fell 40% in 30 days")
    [flagged] = await concord.billing_search("metadata['renewal_risk']:'medium'")
    assert flagged["id"] == billing["id"]
