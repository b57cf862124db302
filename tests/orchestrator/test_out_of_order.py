"""Out-of-order and duplicate delivery over HTTP: updates before creations, payments before
finalizations, each event up to three times, shuffled per subscription with a seed; the CRM
and ERP end exactly as after delivering the same events once, in order, to a fresh system."""

import random
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from orchestrator.settings import OrchestratorSettings
from sandbox.app import create_sandbox_app
from tests.factories import subscription_event
from tests.support.concord_http import Concord, concord_system
from tests.support.databases import second_database, viewer_key
from tests.support.delivery_order import (
    Event,
    interleaved,
    posted_twice,
    sandbox_state,
    shuffled,
    stories,
)
from tests.support.servers import serve_in_thread

SUBSCRIPTIONS = 3
# A worker drains the queue after about this share of deliveries, so some events run before
# their predecessors have even arrived, and others find them already waiting.
BURST_CHANCE = 0.3


@pytest.fixture
def in_order(concord: Concord) -> Concord:
    """The system the events are delivered to once each, in order."""
    return concord


@pytest.fixture
async def shuffled_system(
    database_url: str,
    redis_url: str,
    worker_settings: OrchestratorSettings,
    sqlite_template: Path,
    pg_template: str,
    tmp_path: Path,
) -> AsyncIterator[Concord]:
    """A second, independent system: its own database and sandbox (the Redis is drained
    between the two runs, so they share it)."""
    async with second_database(
        database_url, sqlite_template=sqlite_template, pg_template=pg_template, directory=tmp_path
    ) as url:
        with serve_in_thread(create_sandbox_app()) as sandbox:
            settings = worker_settings.model_copy(
                update={
                    "database_url": url,
                    "erp_url": f"{sandbox}/erp",
                    "crm_url": f"{sandbox}/crm",
                    "provisioning_url": f"{sandbox}/provisioning",
                    "support_url": f"{sandbox}/support",
                    "analytics_url": f"{sandbox}/analytics",
                }
            )
            async with concord_system(
                url, redis_url, sandbox, settings, await viewer_key(url)
            ) as system:
                yield system


@dataclass
class Delivery:
    transactions: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    duplicates: int = 0
    # Reasons of transactions seen parked behind a predecessor between worker runs.
    waits: list[str] = field(default_factory=list)


async def _deliver(concord: Concord, plan: list[Event], rng: random.Random | None) -> Delivery:
    """Deliver the plan; a worker runs dry after each event (in order) or at random points."""
    delivery = Delivery()
    for event in plan:
        answer = await concord.stripe(event.body)
        delivery.transactions[event.id].add(answer["correlation_id"])
        delivery.duplicates += answer["duplicate"]
        if rng is None or rng.random() < BURST_CHANCE:
            await concord.run_workers()
            delivery.waits += [
                str(tx["state_reason"]) for tx in await _transactions(concord, state="pending")
            ]
    await concord.run_workers()
    return delivery


async def _transactions(concord: Concord, **params: str) -> list[dict[str, Any]]:
    response = await concord.api.get(
        "/v1/transactions",
        params={"limit": "500", **params},
        headers={"Authorization": f"Bearer {concord.viewer_key}"},
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def _states(concord: Concord) -> list[str]:
    return [tx["state"] for tx in await _transactions(concord)]


@pytest.mark.parametrize("seed", [7, 2026])
async def test_shuffled_duplicated_delivery_ends_as_the_in_order_run(
    in_order: Concord, shuffled_system: Concord, seed: int
) -> None:
    story = stories(SUBSCRIPTIONS, tag=str(seed))
    events = [event for sub in story for event in sub]
    rng = random.Random(seed)
    plan = interleaved([shuffled(sub, rng) for sub in story], rng)
    assert len(plan) > len(events)

    await _deliver(in_order, events, None)
    expected = await sandbox_state(in_order.sandbox_url)
    delivered = await _deliver(shuffled_system, plan, rng)
    actual = await sandbox_state(shuffled_system.sandbox_url)

    assert actual == expected
    assert await posted_twice(shuffled_system.sandbox_url) == []
    assert await posted_twice(in_order.sandbox_url) == []
    # One transaction per event ID, however often it came.
    assert {event_id: len(cids) for event_id, cids in delivered.transactions.items()} == {
        event.id: 1 for event in events
    }
    assert delivered.duplicates == len(plan) - len(events)
    # The disorder was real: events waited for predecessors that had not yet run.
    assert any("waiting for a posted subscription_activated" in r for r in delivered.waits)
    assert any(r.startswith("waiting for") and "invoice:" in r for r in delivered.waits)
    assert await _states(shuffled_system) == ["posted"] * len(events)
    assert await _states(in_order) == ["posted"] * len(events)
    # The deals carry the last change: quantity 3, so 720.00 a year.
    assert set(expected["crm_deals"].values()) == {("720.00", "closedwon")}


async def test_an_amendment_arriving_after_a_later_one_posted_does_not_roll_back(
    in_order: Concord,
) -> None:
    # Found by the shuffled delivery: without this, the late amendment set the CRM back to
    # 480.00 and posted its older contract version to the ERP after the newer one.
    [story] = stories(1, invoices=0, tag="late")
    created, earlier, later = story

    answers = []
    for event in (created, later, earlier):
        answers.append(await in_order.stripe(event.body))
        await in_order.run_workers()

    state = await sandbox_state(in_order.sandbox_url)
    assert state["crm_deals"] == {created.subscription_id: ("720.00", "closedwon")}
    erp = await in_order.ledger("erp")
    plans = [r for r in erp if r["type"] == "revenueplan"]
    assert [p["total"] for p in plans] == [240.0, 720.0]
    late = await in_order.transaction(answers[2]["correlation_id"])
    assert late["state_reason"].startswith(f"superseded by {answers[1]['correlation_id']}")
    # Its proration is a fact no later state contains: that alone still reaches the ERP.
    assert late["state"] == "posted"
    assert {s["name"] for s in late["runs"][0]["steps"]} == {
        "erp.read_dimensions",
        "erp.post_proration",
    }
    prorations = sorted(r["external_id"] for r in erp if r["type"] == "journalentry")
    assert len(prorations) == 2
    assert await posted_twice(in_order.sandbox_url) == []


async def test_an_amendment_arriving_after_the_cancellation_leaves_the_contract_closed(
    in_order: Concord,
) -> None:
    [story] = stories(1, invoices=0, tag="gone")
    created, amended, _ = story
    canceled = subscription_event(
        "customer.subscription.deleted",
        subscription={**created.body["data"]["object"], "status": "canceled"},
        created=int(amended.body["created"]) + 5,
    )

    for body in (created.body, canceled, amended.body):
        await in_order.stripe(body)
        await in_order.run_workers()

    state = await sandbox_state(in_order.sandbox_url)
    assert state["crm_deals"] == {created.subscription_id: ("0.00", "closedlost")}
    assert state["tenants"] == [(created.subscription_id, False)]
    # The late amendment posted its proration alone; the contract stayed ended.
    assert sorted(await _states(in_order)) == ["posted", "posted", "posted"]
    erp = await in_order.ledger("erp")
    [entry] = [r["external_id"] for r in erp if r["type"] == "journalentry"]
    assert entry.startswith(f"proration:{created.subscription_id}:{amended.body['created']}:")
    plans = [r["external_id"] for r in erp if r["type"] == "revenueplan"]
    assert plans[-1] == f"contract:{created.subscription_id}:ended"
