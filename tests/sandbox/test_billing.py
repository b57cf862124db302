"""The Stripe-shaped billing sandbox over real HTTP: catalogue, subscriptions, prorations,
the invoice lifecycle, payments, usage, lists by period and signed webhooks."""

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe
from fastapi import FastAPI, Request, Response

from sandbox.app import create_sandbox_app
from sandbox.billing_objects import prorated
from sandbox.stripe_form import decode, encode
from tests.support.servers import serve_in_thread

SECRET = "whsec_sandbox_test"
DAY = 86400


@pytest.fixture
def billing() -> Iterator[httpx.Client]:
    with (
        serve_in_thread(create_sandbox_app(faults="")) as url,
        httpx.Client(base_url=f"{url}/billing") as client,
    ):
        yield client


def post(client: httpx.Client, path: str, key: str | None = None, **params: Any) -> dict[str, Any]:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if key is not None:
        headers["Idempotency-Key"] = key
    response = client.post(path, content=encode(params), headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def plan(
    client: httpx.Client, amount: int, interval: str = "month", usage: str = "licensed"
) -> str:
    product = post(client, "/v1/products", name=f"Plan {amount}")
    price = post(
        client,
        "/v1/prices",
        product=product["id"],
        unit_amount=amount,
        currency="usd",
        recurring={"interval": interval, "usage_type": usage},
    )
    return str(price["id"])


def events(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = client.get("/v1/events", params={"limit": 100, **params}).json()[
        "data"
    ]
    return data


def advance(client: httpx.Client, seconds: int) -> None:
    assert client.post("/_admin/clock", json={"advance_s": seconds}).status_code == 200


def test_form_codec_round_trips_stripe_brackets() -> None:
    params = {"items": [{"price": "price_1", "quantity": "2"}], "metadata": {"external_id": "a b"}}

    assert decode(encode(params)) == params
    assert encode({"expand": ["lines"]}) == "expand%5B0%5D=lines"


def test_customer_create_is_idempotent_by_key(billing: httpx.Client) -> None:
    first = post(billing, "/v1/customers", key="k1", name="Acme", metadata={"external_id": "acme"})
    again = post(billing, "/v1/customers", key="k1", name="Acme", metadata={"external_id": "acme"})
    other = billing.post(
        "/v1/customers", content=encode({"name": "Other"}), headers={"Idempotency-Key": "k1"}
    )

    assert again == first
    assert other.status_code == 400
    assert other.json()["error"]["type"] == "idempotency_error"
    [row] = [r for r in billing.get("/_admin/ledger").json()["records"] if r["type"] == "customer"]
    assert (row["external_id"], row["create_calls"]) == ("acme", 2)
    assert [e["type"] for e in events(billing)] == ["customer.created"]


def test_customer_external_id_is_unique_and_searchable(billing: httpx.Client) -> None:
    created = post(billing, "/v1/customers", name="Acme", metadata={"external_id": "acme"})
    duplicate = billing.post("/v1/customers", content=encode({"metadata": {"external_id": "acme"}}))

    found = billing.get(
        "/v1/customers/search", params={"query": "metadata['external_id']:'acme'"}
    ).json()
    assert duplicate.status_code == 400
    assert [c["id"] for c in found["data"]] == [created["id"]]
    assert found["object"] == "search_result"


def test_subscription_invoices_and_charges_the_first_period(billing: httpx.Client) -> None:
    price = plan(billing, 5000)
    customer = post(billing, "/v1/customers", email="ap@acme.test")

    sub = post(
        billing,
        "/v1/subscriptions",
        customer=customer["id"],
        items=[{"price": price, "quantity": 2}],
    )

    assert sub["status"] == "active"
    invoice = billing.get(f"/v1/invoices/{sub['latest_invoice']}").json()
    assert (invoice["status"], invoice["total"], invoice["amount_paid"]) == ("paid", 10000, 10000)
    assert invoice["billing_reason"] == "subscription_create"
    assert invoice["parent"]["subscription_details"]["subscription"] == sub["id"]
    assert [line["quantity"] for line in invoice["lines"]["data"]] == [2]
    kinds = [e["type"] for e in reversed(events(billing))]
    assert kinds[-6:] == [
        "customer.subscription.created",
        "invoice.created",
        "invoice.finalized",
        "charge.succeeded",
        "invoice.paid",
        "invoice.payment_succeeded",
    ]


def test_mid_cycle_upgrade_invoices_the_proration(billing: httpx.Client) -> None:
    basic, pro = plan(billing, 3000), plan(billing, 9000)
    customer = post(billing, "/v1/customers")
    sub = post(billing, "/v1/subscriptions", customer=customer["id"], items=[{"price": basic}])
    length = sub["current_period_end"] - sub["current_period_start"]
    advance(billing, 10 * DAY)

    updated = post(
        billing,
        f"/v1/subscriptions/{sub['id']}",
        items=[{"id": sub["items"]["data"][0]["id"], "price": pro}],
        proration_behavior="always_invoice",
    )

    remaining = sub["current_period_end"] - billing.get("/_admin/ledger").json()["clock"]
    invoice = billing.get(f"/v1/invoices/{updated['latest_invoice']}").json()
    amounts = sorted(line["amount"] for line in invoice["lines"]["data"])
    assert invoice["billing_reason"] == "subscription_update"
    # Allow the clock to have ticked a second between the update and the ledger read.
    expected = prorated(9000, remaining, length) - prorated(3000, remaining, length)
    assert abs(invoice["total"] - expected) <= 1
    assert amounts[0] < 0 < amounts[1]
    assert updated["items"]["data"][0]["price"]["id"] == pro
    change = next(e for e in events(billing, type="customer.subscription.updated"))
    assert change["data"]["previous_attributes"]["items"]["data"][0]["price"]["id"] == basic


def test_renewal_bills_next_period_usage_and_pending_prorations(billing: httpx.Client) -> None:
    seats, overage = plan(billing, 1000), plan(billing, 5, usage="metered")
    customer = post(billing, "/v1/customers")
    sub = post(
        billing,
        "/v1/subscriptions",
        customer=customer["id"],
        items=[{"price": seats, "quantity": 3}, {"price": overage}],
    )
    metered = sub["items"]["data"][1]["id"]
    post(billing, f"/v1/subscription_items/{metered}/usage_records", quantity=40)
    post(billing, f"/v1/subscription_items/{metered}/usage_records", quantity=2)
    post(
        billing,
        f"/v1/subscriptions/{sub['id']}",
        items=[{"id": sub["items"]["data"][0]["id"], "quantity": 4}],
    )

    advance(billing, sub["current_period_end"] - sub["current_period_start"] + 60)

    renewed = billing.get(f"/v1/subscriptions/{sub['id']}").json()
    invoice = billing.get(f"/v1/invoices/{renewed['latest_invoice']}").json()
    lines = invoice["lines"]["data"]
    assert invoice["billing_reason"] == "subscription_cycle"
    assert renewed["current_period_start"] == sub["current_period_end"]
    assert [(line["quantity"], line["amount"]) for line in lines[:2]] == [(4, 4000), (42, 210)]
    prorations = [line for line in lines[2:] if line["parent"]["invoice_item_details"]["proration"]]
    assert len(prorations) == 2
    assert invoice["total"] == sum(line["amount"] for line in lines)
    assert invoice["status"] == "paid"


def test_failed_payment_then_recovery(billing: httpx.Client) -> None:
    price = plan(billing, 2500)
    customer = post(billing, "/v1/customers", payment_method="pm_card_chargeCustomerFail")

    sub = post(billing, "/v1/subscriptions", customer=customer["id"], items=[{"price": price}])
    invoice = billing.get(f"/v1/invoices/{sub['latest_invoice']}").json()
    post(
        billing,
        f"/v1/customers/{customer['id']}",
        invoice_settings={"default_payment_method": "pm_card_visa"},
    )
    paid = post(billing, f"/v1/invoices/{invoice['id']}/pay")

    assert sub["status"] == "incomplete"
    assert (invoice["status"], invoice["attempt_count"]) == ("open", 1)
    assert invoice["next_payment_attempt"] is not None
    assert (paid["status"], paid["attempt_count"], paid["amount_paid"]) == ("paid", 2, 2500)
    assert billing.get(f"/v1/subscriptions/{sub['id']}").json()["status"] == "active"
    charges = billing.get("/v1/charges", params={"customer": customer["id"]}).json()["data"]
    assert sorted(c["status"] for c in charges) == ["failed", "succeeded"]
    assert {e["type"] for e in events(billing)} >= {
        "invoice.payment_failed",
        "charge.failed",
        "invoice.paid",
    }


def test_manual_invoice_void_and_uncollectible(billing: httpx.Client) -> None:
    customer = post(billing, "/v1/customers")
    drafts = [post(billing, "/v1/invoices", customer=customer["id"]) for _ in range(2)]

    voided = billing.post(f"/v1/invoices/{drafts[0]['id']}/void")
    opened = [post(billing, f"/v1/invoices/{d['id']}/finalize") for d in drafts]

    assert drafts[0]["status"] == "draft"
    assert voided.status_code == 400
    # A zero-amount invoice is paid as soon as it is finalized, as in Stripe.
    assert [o["status"] for o in opened] == ["paid", "paid"]
    assert billing.post(f"/v1/invoices/{drafts[0]['id']}/mark_uncollectible").status_code == 400


def test_lists_filter_by_created_and_page(billing: httpx.Client) -> None:
    customers = [post(billing, "/v1/customers", name=f"c{n}") for n in range(3)]
    advance(billing, 40 * DAY)
    later = post(billing, "/v1/customers", name="later")

    old = billing.get(
        "/v1/customers", params={"created[lt]": later["created"] - 30 * DAY, "limit": 2}
    ).json()
    rest = billing.get(
        "/v1/customers",
        params={
            "created[lt]": later["created"] - 30 * DAY,
            "starting_after": old["data"][-1]["id"],
        },
    ).json()
    recent = billing.get("/v1/customers", params={"created[gte]": later["created"]}).json()

    assert [c["id"] for c in old["data"] + rest["data"]] == [c["id"] for c in reversed(customers)]
    assert (old["has_more"], rest["has_more"]) == (True, False)
    assert [c["id"] for c in recent["data"]] == [later["id"]]


def receiver(seen: list[dict[str, Any]], *, fail_first: int = 0) -> FastAPI:
    app = FastAPI()
    calls = {"n": 0}

    @app.post("/v1/webhooks/stripe")
    async def hook(request: Request) -> Response:
        calls["n"] += 1
        body = await request.body()
        event = stripe.Webhook.construct_event(
            body.decode(), request.headers["Stripe-Signature"], SECRET, tolerance=300
        )
        seen.append({"id": event["id"], "type": event["type"], "attempt": calls["n"]})
        return Response(status_code=500 if calls["n"] <= fail_first else 200)

    return app


def test_webhooks_are_signed_retried_and_redelivered() -> None:
    seen: list[dict[str, Any]] = []
    with (
        serve_in_thread(receiver(seen, fail_first=2)) as hook_url,
        serve_in_thread(
            create_sandbox_app(faults="", webhook_url=hook_url, stripe_webhook_secret=SECRET)
        ) as url,
        httpx.Client(base_url=f"{url}/billing", timeout=30) as client,
    ):
        customer = post(client, "/v1/customers", name="Acme")
        status = client.get("/_admin/webhooks", params={"wait_s": 20}).json()
        redelivered = client.post(
            "/_admin/webhooks/redeliver", json={"event_id": status["deliveries"][0]["event_id"]}
        )
        after = client.get("/_admin/webhooks", params={"wait_s": 20}).json()

    [delivery] = status["deliveries"]
    assert status["idle"] is True
    assert (delivery["type"], delivery["state"], delivery["attempts"]) == (
        "customer.created",
        "delivered",
        3,
    )
    assert redelivered.status_code == 200
    assert after["deliveries"][0]["attempts"] == 4
    # Every attempt verified with Stripe's own library; the same event id arrived each time.
    assert [s["type"] for s in seen] == ["customer.created"] * 4
    assert len({s["id"] for s in seen}) == 1
    event = json.loads(json.dumps(seen[0]))
    assert event["id"].startswith("evt_")
    assert customer["object"] == "customer"
