"""Test inputs built from the vendor fixtures in tests/fixtures (never invented shapes)."""

import copy
import json
import secrets
import time
from functools import cache
from pathlib import Path
from typing import Any

import stripe

FIXTURES = Path(__file__).parent / "fixtures"
WEBHOOK_SECRET = "whsec_test_secret"


@cache
def _load(relative: str) -> Any:
    return json.loads((FIXTURES / relative).read_text())


FIXTURE_INVOICE: dict[str, Any] = json.loads((FIXTURES / "stripe/objects/invoice.json").read_text())


def fixture_bytes(relative: str) -> bytes:
    return (FIXTURES / relative).read_bytes()


def stripe_event(
    event_type: str = "invoice.finalized",
    *,
    invoice: dict[str, Any] | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """Stripe's own Event envelope (objects/event.json) carrying its invoice object."""
    event = copy.deepcopy(_load("stripe/objects/event.json"))
    obj = copy.deepcopy(_load("stripe/objects/invoice.json"))
    obj["status"] = "open"
    obj.update(invoice or {})
    event.update(
        id=event_id or f"evt_{secrets.token_hex(12)}",
        type=event_type,
        data={"object": obj},
        created=int(time.time()),
    )
    return dict(event)


def new_invoice(**fields: Any) -> dict[str, Any]:
    """Fields to override on the fixture invoice so each test posts a distinct one."""
    return {"id": f"in_{secrets.token_hex(12)}", **fields}


def sign(body: bytes, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    return str(
        stripe.WebhookSignature.generate_signature_header(
            body.decode(),
            secret,
            timestamp=timestamp if timestamp is not None else int(time.time()),
        )
    )


def signed_headers(body: bytes, **kwargs: Any) -> dict[str, str]:
    return {"Stripe-Signature": sign(body, **kwargs), "Content-Type": "application/json"}


def subscription_event(
    event_type: str,
    *,
    subscription: dict[str, Any] | None = None,
    previous_attributes: dict[str, Any] | None = None,
    created: int | None = None,
) -> dict[str, Any]:
    """Stripe's Event envelope carrying its subscription object (objects/subscription.json)."""
    event = copy.deepcopy(_load("stripe/objects/event.json"))
    obj = copy.deepcopy(_load("stripe/objects/subscription.json"))
    obj.update(subscription or {})
    data: dict[str, Any] = {"object": obj}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    event.update(
        id=f"evt_{secrets.token_hex(12)}",
        type=event_type,
        data=data,
        created=created or int(time.time()),
    )
    return dict(event)


def with_quantity(subscription: dict[str, Any], quantity: int) -> dict[str, Any]:
    """The fixture subscription with its one item's quantity changed."""
    changed = copy.deepcopy(subscription)
    changed["items"]["data"][0]["quantity"] = quantity
    return changed


def fixture_subscription(**fields: Any) -> dict[str, Any]:
    """Stripe's subscription fixture in a current 30-day period (the fixture's own item period
    is a placeholder that ends before it starts), so an amendment has something to prorate."""
    obj = copy.deepcopy(_load("stripe/objects/subscription.json"))
    start = int(time.time()) - 10 * 86400
    obj.update(current_period_start=start, current_period_end=start + 30 * 86400)
    obj.update(fields)
    return dict(obj)
