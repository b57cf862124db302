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


def test_a_run_outlives_requests_that_time_out() -> None:
    # Every invoice call hangs past the client's timeout, the invoice list a fixed card reads
    # included: a timeout there ended the run, and `concord demo` then stopped everything.
    faults = "billing.invoices:hang=1,billing:hang_s=2,seed=1"
    with serve_in_thread(create_sandbox_app(faults=faults)) as url:
        report = run_traffic(
            f"{url}/billing", rate=1000, duration=0.1, seed=7, timeout_s=0.1, sleep=lambda _s: None
        )

    assert sum(report.actions.values()) == 100
    assert report.actions["card_fixed"] > 0
    assert report.errors["ReadTimeout"] > 0


def test_after_a_stall_the_run_catches_up_a_few_actions_not_all() -> None:
    # A fake clock: it moves when the generator sleeps, and jumps 10 s (a stalled machine)
    # after the fourth action. At 10 actions/s that is 100 actions behind schedule.
    slept: list[float] = []
    calls = 0

    def clock() -> float:
        nonlocal calls
        calls += 1
        return sum(slept) + (10.0 if calls > 5 else 0.0)

    with serve_in_thread(create_sandbox_app()) as url:
        report = run_traffic(
            f"{url}/billing", rate=10, duration=6, seed=7, sleep=slept.append, clock=clock
        )

    assert sum(report.actions.values()) == 60
    # Paced again after MAX_CATCH_UP actions: about 50 intervals of 0.1 s slept after the
    # stall. Firing the whole backlog at once would have slept under half a second in all.
    assert sum(slept) > 4.5
