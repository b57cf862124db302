"""Billing sandbox webhooks verify against Concord's real intake, and a redelivery is a duplicate."""

import json

import httpx

from sandbox.app import create_sandbox_app
from sandbox.stripe_form import encode
from tests.factories import WEBHOOK_SECRET
from tests.support.servers import serve_in_thread


def test_sandbox_webhooks_pass_intake_and_redelivery_is_a_duplicate(api_url: str) -> None:
    app = create_sandbox_app(faults="", webhook_url=api_url, stripe_webhook_secret=WEBHOOK_SECRET)
    with (
        serve_in_thread(app) as url,
        httpx.Client(base_url=f"{url}/billing", timeout=30) as billing,
    ):
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        product = billing.post("/v1/products", content=encode({"name": "Pro"}), headers=form).json()
        price_params = {
            "product": product["id"],
            "unit_amount": 9900,
            "currency": "usd",
            "recurring": {"interval": "month"},
        }
        price = billing.post("/v1/prices", content=encode(price_params), headers=form).json()
        customer = billing.post(
            "/v1/customers", content=encode({"name": "Acme"}), headers=form
        ).json()
        sub_params = {"customer": customer["id"], "items": [{"price": price["id"]}]}
        assert (
            billing.post("/v1/subscriptions", content=encode(sub_params), headers=form).status_code
            == 200
        )
        first = billing.get("/_admin/webhooks", params={"wait_s": 30}).json()
        finalized = next(d for d in first["deliveries"] if d["type"] == "invoice.finalized")
        billing.post("/_admin/webhooks/redeliver", json={"event_id": finalized["event_id"]})
        second = billing.get("/_admin/webhooks", params={"wait_s": 30}).json()

    assert first["idle"] is True
    assert {d["state"] for d in first["deliveries"]} == {"delivered"}
    # Intake verified every signature (no 400s) and saw each event once.
    assert {d["last_status"] for d in first["deliveries"]} <= {200, 202}
    assert all(json.loads(d["last_response"])["duplicate"] is False for d in first["deliveries"])
    again = next(d for d in second["deliveries"] if d["event_id"] == finalized["event_id"])
    assert (again["state"], again["attempts"]) == ("delivered", 2)
    assert json.loads(again["last_response"])["duplicate"] is True
