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
