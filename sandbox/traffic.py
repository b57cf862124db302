"""Drive the billing sandbox through a B2B SaaS life: sign-ups on monthly and annual plans,
upgrades and downgrades mid-cycle, usage overages, renewals (invoices), failed and recovered
payments, cancellations, renewal risks flagged on the CRM deal, and deals won in the CRM
(quote-to-cash; most complete, a few missing a property Concord needs).

plan_traffic() is pure: a seed fixes the exact sequence of actions, which name customers by
their sign-up number rather than by the IDs billing hands out. run_traffic() plays a plan
against a live sandbox at a steady rate, speaking Stripe's form encoding with an
Idempotency-Key per action, so a retried action is never applied twice.
"""

import random
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from sandbox.stripe_form import encode
from sandbox.usage_meter import UsageMeter

DAY = 86400
# How many actions behind its schedule the generator may fall and still catch up at once.
MAX_CATCH_UP = 5
# name -> (unit amount in cents, interval); amounts as a small SaaS would price them.
PLANS = {
    "starter_monthly": (2900, "month"),
    "pro_monthly": (9900, "month"),
    "pro_annual": (99000, "year"),
    "enterprise_annual": (490000, "year"),
}
UPGRADES = {
    "starter_monthly": "pro_monthly",
    "pro_monthly": "pro_annual",
    "pro_annual": "enterprise_annual",
}
OVERAGE_CENTS = 5
WEIGHTS = {
    "signup": 22,
    "usage": 24,
    "advance": 22,
    "upgrade": 9,
    "downgrade": 5,
    "card_fails": 6,
    "card_fixed": 6,
    "cancel": 6,
    "renewal_risk": 3,
    "deal_won": 4,
}
# CRM product IDs (HubSpot hs_product_id) of the plans, as orchestrator/mappings.toml maps them.
CRM_PRODUCTS = {
    "starter_monthly": "9001",
    "pro_monthly": "9002",
    "pro_annual": "9003",
    "enterprise_annual": "9004",
}
# What a won deal may lack; most lack nothing.
DEAL_FLAWS = ("tax_region", "payment_terms", "hs_product_id")


@dataclass(frozen=True, slots=True)
class Action:
    kind: str
    customer: int = -1
    plan: str = ""
    quantity: int = 0
    # For deal_won: the property left out ("" for a complete deal), and whether the company
    # has a parent that sets its tax region and payment terms.
    flaw: str = ""
    parent: bool = False


def plan_traffic(*, count: int, seed: int) -> list[Action]:
    """A deterministic sequence of `count` actions for the seed."""
    rng = random.Random(seed)
    plans: dict[int, str] = {}
    # sorted(plans), kept as plans change: rebuilding it per action made a long plan quadratic.
    live: list[int] = []
    failing: set[int] = set()
    signups = 0
    actions: list[Action] = []
    kinds, weights = list(WEIGHTS), list(WEIGHTS.values())
    while len(actions) < count:
        kind = "signup" if not plans else rng.choices(kinds, weights)[0]
        who = rng.choice(live) if live else -1
        if kind == "signup":
            name = rng.choices(list(PLANS), [40, 35, 18, 7])[0]
            # Customers are numbered by sign-up, so a plan never depends on billing's IDs.
            plans[signups] = name
            live.append(signups)
            actions.append(Action("signup", signups, name, rng.randint(1, 25)))
            signups += 1
        elif kind == "advance":
            actions.append(Action("advance", quantity=rng.randint(1, 6)))
        elif kind == "usage" and plans[who].endswith("monthly"):
            actions.append(Action("usage", who, quantity=rng.randint(10, 2000)))
        elif kind == "upgrade" and plans[who] in UPGRADES:
            plans[who] = UPGRADES[plans[who]]
            actions.append(Action("upgrade", who, plans[who], rng.randint(1, 30)))
        elif kind == "downgrade":
            actions.append(Action("downgrade", who, plans[who], 1))
        elif kind == "card_fails" and who not in failing:
            failing.add(who)
            actions.append(Action("card_fails", who))
        elif kind == "card_fixed" and failing:
            fixed = rng.choice(sorted(failing))
            failing.discard(fixed)
            actions.append(Action("card_fixed", fixed))
        elif kind == "renewal_risk":
            actions.append(Action("renewal_risk", who, plans[who]))
        elif kind == "deal_won":
            flaw = rng.choice(DEAL_FLAWS) if rng.random() < 0.2 else ""
            name = rng.choice(list(CRM_PRODUCTS))
            actions.append(
                Action(
                    "deal_won",
                    plan=name,
                    quantity=rng.randint(1, 20),
                    flaw=flaw,
                    parent=rng.random() < 0.3,
                )
            )
        elif kind == "cancel" and len(plans) > 3:
            del plans[who]
            live.remove(who)
            failing.discard(who)
            actions.append(Action("cancel", who))
    return actions


@dataclass
class TrafficReport:
    actions: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    requests: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "actions": dict(self.actions),
            "errors": dict(self.errors),
            "requests": self.requests,
        }


class _Billing:
    """A tiny Stripe client: form bodies, idempotency keys, retries on what is retryable."""

    def __init__(
        self, client: httpx.Client, report: TrafficReport, run: str, sleep: Callable[[float], None]
    ) -> None:
        self.client, self.report, self.run, self.sleep = client, report, run, sleep

    def send(self, method: str, url: str, **kwargs: Any) -> httpx.Response | None:
        """One request, counted; a transport error (a timeout on a loaded machine) is counted
        in the report instead of ending the run."""
        self.report.requests += 1
        try:
            return self.client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            self.report.errors[type(exc).__name__] += 1
            return None

    def crm_url(self, path: str) -> str:
        return str(self.client.base_url).rstrip("/").removesuffix("/billing") + "/crm" + path

    def call(
        self, method: str, path: str, key: str, params: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        headers = {
            "Idempotency-Key": f"{self.run}:{key}",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        for attempt in range(4):
            response = self.send(method, path, content=encode(params or {}), headers=headers)
            if response is not None:
                if response.status_code < 300:
                    body: dict[str, Any] = response.json()
                    return body
                self.report.errors[str(response.status_code)] += 1
                if response.status_code < 500 and response.status_code != 429:
                    return None
            self.sleep(min(2.0, 0.05 * 2**attempt))
        return None


@dataclass
class _World:
    prices: dict[str, str] = field(default_factory=dict)
    subs: dict[int, dict[str, Any]] = field(default_factory=dict)
    customers: dict[int, str] = field(default_factory=dict)


def _catalogue(api: _Billing, world: _World) -> None:
    for name, (amount, interval) in PLANS.items():
        # Fixed product IDs and price lookup keys: what the mapping file names.
        product = api.call(
            "POST",
            "/v1/products",
            f"product:{name}",
            {"id": f"prod_{name}", "name": name.replace("_", " ").title()},
        )
        if product is None:
            raise RuntimeError(f"billing refused to create product {name}")
        price = api.call(
            "POST",
            "/v1/prices",
            f"price:{name}",
            {
                "product": product["id"],
                "unit_amount": amount,
                "currency": "usd",
                "nickname": name,
                "lookup_key": name,
                "recurring": {"interval": interval},
            },
        )
        if price is None:
            raise RuntimeError(f"billing refused to create price {name}")
        world.prices[name] = price["id"]
    product = api.call(
        "POST", "/v1/products", "product:overage", {"id": "prod_api_calls", "name": "API calls"}
    )
    overage = api.call(
        "POST",
        "/v1/prices",
        "price:overage",
        {
            "product": (product or {}).get("id"),
            "unit_amount": OVERAGE_CENTS,
            "currency": "usd",
            "nickname": "api_calls",
            "recurring": {"interval": "month", "usage_type": "metered"},
        },
    )
    world.prices["overage"] = (overage or {}).get("id", "")


def _signup(api: _Billing, world: _World, key: str, action: Action, run: str) -> None:
    params: dict[str, Any] = {
        "name": f"Customer {action.customer}",
        "email": f"billing+{action.customer}@example.com",
        "metadata": {"external_id": f"acct-{run}-{action.customer}"},
    }
    customer = api.call("POST", "/v1/customers", f"{key}:customer", params)
    if customer is None:
        return
    world.customers[action.customer] = customer["id"]
    items: list[dict[str, Any]] = [
        {"price": world.prices[action.plan], "quantity": action.quantity}
    ]
    if action.plan.endswith("monthly") and world.prices.get("overage"):
        items.append({"price": world.prices["overage"]})
    params = {"customer": customer["id"], "items": items}
    created = api.call("POST", "/v1/subscriptions", f"{key}:subscription", params)
    if created is not None:
        world.subs[action.customer] = created


def _change(api: _Billing, world: _World, key: str, action: Action, sub: dict[str, Any]) -> None:
    item = sub["items"]["data"][0]
    upgrade = action.kind == "upgrade"
    quantity = action.quantity if upgrade else max(1, item["quantity"] // 2)
    change: dict[str, Any] = {"id": item["id"], "quantity": quantity}
    # The sandbox keeps a subscription's interval; an interval change is a quantity change here.
    if upgrade and PLANS[action.plan][1] == item["price"]["recurring"]["interval"]:
        change["price"] = world.prices[action.plan]
    # Upgrades are invoiced at once, downgrades credited on the next invoice, as SaaS tends to.
    behavior = "always_invoice" if upgrade else "create_prorations"
    params = {"items": [change], "proration_behavior": behavior}
    updated = api.call("POST", f"/v1/subscriptions/{sub['id']}", key, params)
    if updated is not None:
        world.subs[action.customer] = updated


def _card(api: _Billing, world: _World, key: str, action: Action) -> None:
    customer = world.customers[action.customer]
    method = "pm_card_chargeCustomerFail" if action.kind == "card_fails" else "pm_card_visa"
    params = {"invoice_settings": {"default_payment_method": method}}
    api.call("POST", f"/v1/customers/{customer}", key, params)
    if action.kind == "card_fixed":
        query: dict[str, str | int] = {"customer": customer, "status": "open", "limit": 100}
        listed = api.send("GET", "/v1/invoices", params=query)
        open_invoices: list[dict[str, Any]] = []
        if listed is not None and listed.status_code == 200:
            open_invoices = listed.json().get("data", [])
        for inv in open_invoices:
            api.call("POST", f"/v1/invoices/{inv['id']}/pay", f"{key}:{inv['id']}")


def _play(api: _Billing, world: _World, n: int, action: Action, run: str) -> None:
    sub = world.subs.get(action.customer)
    key = f"{n}:{action.kind}"
    if action.kind == "signup":
        _signup(api, world, key, action, run)
    elif action.kind == "deal_won":
        _deal_won(api, n, action, run)
    elif action.kind == "advance":
        # The sandbox bills every subscription the clock passes: slow on a loaded machine.
        api.send("POST", "/_admin/clock", json={"advance_s": action.quantity * DAY})
    elif sub is None:
        return
    elif action.kind == "usage" and len(sub["items"]["data"]) > 1:
        path = f"/v1/subscription_items/{sub['items']['data'][1]['id']}/usage_records"
        api.call("POST", path, key, {"quantity": action.quantity})
    elif action.kind in {"upgrade", "downgrade"}:
        _change(api, world, key, action, sub)
    elif action.kind in {"card_fails", "card_fixed"}:
        _card(api, world, key, action)
    elif action.kind == "cancel":
        api.call("DELETE", f"/v1/subscriptions/{sub['id']}", key)
        world.subs.pop(action.customer, None)
    elif action.kind == "renewal_risk":
        _renewal_risk(api, sub)


def _crm_create(api: _Billing, object_type: str, body: dict[str, Any]) -> str | None:
    response = api.send("POST", api.crm_url(f"/crm/v3/objects/{object_type}"), json=body)
    if response is None:
        return None
    if response.status_code >= 300:
        api.report.errors[str(response.status_code)] += 1
        return None
    return str(response.json()["id"])


def _link(to_id: str, type_id: int) -> dict[str, Any]:
    return {
        "to": {"id": to_id},
        "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
    }


def _deal_won(api: _Billing, n: int, action: Action, run: str) -> None:
    """Sales wins a deal in the CRM: company (perhaps under a parent), line item, deal."""
    terms = {"tax_region": "US", "payment_terms": "net_30"}
    terms = {k: v for k, v in terms.items() if k != action.flaw}
    company: dict[str, Any] = {"properties": {"name": f"Prospect {run}-{n}", **terms}}
    if action.parent:
        # The group's parent company holds the terms; the billed child inherits them.
        parent = _crm_create(api, "companies", {"properties": {"name": f"Group {n}", **terms}})
        if parent is None:
            return
        company = {
            "properties": {"name": f"Prospect {run}-{n}"},
            "associations": [_link(parent, 14)],
        }
    company_id = _crm_create(api, "companies", company)
    item_props = {"name": action.plan, "quantity": str(action.quantity)}
    if action.flaw != "hs_product_id":
        item_props["hs_product_id"] = CRM_PRODUCTS[action.plan]
    line_id = _crm_create(api, "line_items", {"properties": item_props})
    if company_id is None or line_id is None:
        return
    deal = {
        "properties": {
            "dealname": f"{action.plan} for Prospect {n}",
            "dealstage": "closedwon",
            "deal_currency_code": "USD",
            "external_id": f"deal-{run}-{n}",
        },
        "associations": [_link(company_id, 5), _link(line_id, 19)],
    }
    _crm_create(api, "deals", deal)


def _renewal_risk(api: _Billing, sub: dict[str, Any]) -> None:
    """Customer success marks the subscription's CRM deal at risk; the CRM sends the webhook."""
    body = {
        "inputs": [
            {
                "id": sub["id"],
                "idProperty": "external_id",
                "properties": {"renewal_risk": "high", "dealname": f"Subscription {sub['id']}"},
            }
        ]
    }
    response = api.send("POST", api.crm_url("/crm/v3/objects/deals/batch/upsert"), json=body)
    if response is not None and response.status_code >= 300:
        api.report.errors[str(response.status_code)] += 1


def run_traffic(
    billing_url: str,
    *,
    rate: float,
    duration: float,
    seed: int,
    timeout_s: float = 10.0,
    run_id: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    usage_api_url: str | None = None,
    usage_api_key: str | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> TrafficReport:
    """Play int(rate * duration) actions against billing at `rate` actions per second.

    billing_url is the billing system's base, e.g. http://127.0.0.1:8100/billing. Returns what
    was done and what failed (injected faults included); raises only if the catalogue cannot be
    created at all. run_id (random by default) prefixes idempotency keys and customer external
    IDs, so two runs of one seed against one sandbox are two sets of customers, not replays.
    """
    if rate <= 0 or duration < 0:
        raise ValueError("rate must be positive and duration not negative")
    report, world = TrafficReport(), _World()
    interval = 1.0 / rate
    with httpx.Client(base_url=billing_url.rstrip("/"), timeout=timeout_s) as client:
        run = run_id or f"t{seed}-{secrets.token_hex(3)}"
        api = _Billing(client, report, run, sleep)
        _catalogue(api, world)
        # With Concord's API and an ingest key, usage is also metered to it as CloudEvents.
        meter = (
            UsageMeter(
                client,
                api_url=usage_api_url,
                api_key=usage_api_key,
                run=run,
                unit_amount_minor=OVERAGE_CENTS,
                seed=seed,
            )
            if usage_api_url and usage_api_key
            else None
        )
        started = clock()
        for n, action in enumerate(plan_traffic(count=int(rate * duration), seed=seed)):
            _play(api, world, n, action, run)
            if meter is not None:
                used = world.subs.get(action.customer) if action.kind == "usage" else None
                meter.observe(list(world.subs.values()), used, action.quantity)
            report.actions[action.kind] += 1
            # Pace against the start, so slow calls do not stretch the whole run; but after a
            # stall (a loaded machine, a clock advance billing everyone) forgive what is more
            # than a few actions behind instead of firing them all at once: that burst is what
            # kept a loaded demo overloaded after the load had gone.
            delay = started + (n + 1) * interval - clock()
            if delay > 0:
                sleep(delay)
            elif delay < -MAX_CATCH_UP * interval:
                started -= delay + MAX_CATCH_UP * interval
    if meter is not None:
        for what, count in meter.report.items():
            (report.actions if what == "usage_events" else report.errors)[what] += count
    return report
