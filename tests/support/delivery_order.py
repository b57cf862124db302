"""Subscriptions and invoices as Stripe events, a seeded out-of-order delivery plan for them,
and the CRM and ERP state they leave behind, read from the sandbox over HTTP."""

import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

from tests.factories import (
    fixture_subscription,
    new_invoice,
    stripe_event,
    subscription_event,
    with_quantity,
)


@dataclass(frozen=True)
class Event:
    subscription_id: str
    body: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.body["id"])

    @property
    def type(self) -> str:
        return str(self.body["type"])


def _at(event: dict[str, Any], created: int) -> dict[str, Any]:
    event["created"] = created
    return event


def subscription_story(index: int, *, invoices: int, tag: str, t0: int) -> list[Event]:
    """One subscription in business order: created, two quantity changes, then its invoices,
    each finalized and then paid."""
    sub_id, customer = f"sub_order{tag}n{index}", f"cus_order{tag}n{index}"
    first = fixture_subscription(id=sub_id, customer=customer)
    second, third = with_quantity(first, 2), with_quantity(first, 3)
    bodies = [
        subscription_event("customer.subscription.created", subscription=first, created=t0),
        subscription_event(
            "customer.subscription.updated",
            subscription=second,
            previous_attributes={"items": first["items"]},
            created=t0 + 10,
        ),
        subscription_event(
            "customer.subscription.updated",
            subscription=third,
            previous_attributes={"items": second["items"]},
            created=t0 + 20,
        ),
    ]
    for n in range(invoices):
        invoice = new_invoice(
            customer=customer, subscription=sub_id, status="paid", amount_paid=1000
        )
        finalized = stripe_event("invoice.finalized", invoice={**invoice, "status": "open"})
        bodies += [
            _at(finalized, t0 + 30 + 10 * n),
            _at(stripe_event("invoice.paid", invoice=invoice), t0 + 35 + 10 * n),
        ]
    return [Event(sub_id, body) for body in bodies]


def stories(count: int, *, invoices: int = 2, tag: str = "") -> list[list[Event]]:
    t0 = int(time.time()) - 600
    return [subscription_story(i, invoices=invoices, tag=tag, t0=t0) for i in range(count)]


def _before(plan: list[Event], later: Event, earlier: Event) -> None:
    """Make `later`'s first delivery come before `earlier`'s, by swapping the two."""
    first_later = plan.index(later)
    first_earlier = plan.index(earlier)
    if first_earlier < first_later:
        plan[first_earlier], plan[first_later] = plan[first_later], plan[first_earlier]


def shuffled(story: list[Event], rng: random.Random) -> list[Event]:
    """Each event one to three times, shuffled; the first update arrives before the creation
    and every payment before its invoice's finalization."""
    plan = [event for event in story for _ in range(rng.randint(1, 3))]
    rng.shuffle(plan)
    created, update = story[0], story[1]
    _before(plan, update, created)
    invoice_events = story[3:]
    for finalized, paid in zip(invoice_events[::2], invoice_events[1::2], strict=True):
        _before(plan, paid, finalized)
    return plan


def interleaved(plans: list[list[Event]], rng: random.Random) -> list[Event]:
    """Merge per-subscription plans, keeping each one's own order."""
    queues = [list(plan) for plan in plans]
    merged: list[Event] = []
    while any(queues):
        queue = rng.choice([q for q in queues if q])
        merged.append(queue.pop(0))
    return merged


async def sandbox_state(sandbox_url: str) -> dict[str, Any]:
    """What the CRM, ERP and provisioning hold, keyed by Concord's external IDs."""
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=30) as http:
        crm = (await http.get("/crm/_admin/ledger")).json()["records"]
        erp = (await http.get("/erp/_admin/ledger")).json()["records"]
        tenants = (await http.get("/provisioning/_admin/ledger")).json()["records"]
        deals = {}
        for record in crm:
            if record["type"] == "deals":
                found = await http.get(
                    f"/crm/crm/v3/objects/deals/{record['external_id']}",
                    params={"idProperty": "external_id"},
                )
                props = found.json()["properties"]
                deals[record["external_id"]] = (props["amount"], props["dealstage"])
    return {
        "crm_deals": deals,
        "crm_objects": sorted((r["type"], r["external_id"]) for r in crm),
        "erp": sorted((r["type"], r["external_id"], r["total"], r["currency"]) for r in erp),
        "tenants": sorted((r["external_id"], r["enabled"]) for r in tenants),
    }


UPSERTED_BY_PUT = frozenset({"customer"})


async def posted_twice(sandbox_url: str) -> list[tuple[str, str]]:
    """ERP records that more than one create call named, and external IDs held twice."""
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=30) as http:
        erp = (await http.get("/erp/_admin/ledger")).json()["records"]
    held = Counter((r["type"], r["external_id"]) for r in erp)
    doubled = {key for key, n in held.items() if n > 1}
    # Customers are upserted by PUT on their external ID: a repeated call (a retry after a
    # timeout on a busy machine) updates the one record, by design. Records created by POST
    # must have met exactly one creating call: lookup-first forbids a second.
    doubled |= {
        (r["type"], r["external_id"])
        for r in erp
        if r["create_calls"] != 1 and r["type"] not in UPSERTED_BY_PUT
    }
    return sorted(doubled)
