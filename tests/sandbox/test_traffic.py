"""The traffic generator: a seed fixes the plan, and a run leaves billing with a SaaS history."""

from collections import Counter

import httpx

from sandbox.app import create_sandbox_app
from sandbox.traffic import plan_traffic, run_traffic
from tests.support.servers import serve_in_thread


def test_plan_is_deterministic_for_a_seed() -> None:
    first = plan_traffic(count=300, seed=42)

    assert first == plan_traffic(count=300, seed=42)
    assert first != plan_traffic(count=300, seed=43)
    kinds = Counter(a.kind for a in first)
    assert set(kinds) == {
        "signup",
        "usage",
        "advance",
        "upgrade",
        "downgrade",
        "card_fails",
        "card_fixed",
        "cancel",
        "renewal_risk",
        "deal_won",
    }
    assert first[0].kind == "signup"
    # Every action names a customer that signed up before it and has not canceled.
    live: set[int] = set()
    for action in first:
        if action.kind == "signup":
            live.add(action.customer)
        elif action.customer >= 0:
            assert action.customer in live, action
            if action.kind == "cancel":
                live.discard(action.customer)


def test_run_produces_invoices_payments_failures_and_cancellations() -> None:
    with serve_in_thread(create_sandbox_app(faults="billing:500=0.05,seed=1")) as url:
        report = run_traffic(
            f"{url}/billing", rate=1000, duration=0.25, seed=7, sleep=lambda _s: None
        )
        events: Counter[str] = Counter()
        with httpx.Client(base_url=f"{url}/billing") as client:
            client.post("/_admin/faults", json={"faults": ""})
            page = client.get("/v1/events", params={"limit": 100}).json()
            while True:
                events.update(e["type"] for e in page["data"])
                if not page["has_more"]:
                    break
                page = client.get(
                    "/v1/events", params={"limit": 100, "starting_after": page["data"][-1]["id"]}
                ).json()

    assert sum(report.actions.values()) == 250
    assert report.errors["500"] > 0  # injected faults were met and retried past
    for kind in (
        "customer.subscription.created",
        "invoice.paid",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "invoice.payment_failed",
    ):
        assert events[kind] > 0, (kind, events)
    assert (
        events["invoice.finalized"] > events["customer.subscription.created"]
    )  # renewals happened
