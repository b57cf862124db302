"""Stripe-shaped objects and Event envelopes, field for field as in Stripe's own fixtures."""

import json
import secrets
import time
from typing import Any

import stripe


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def invoice_object(
    *,
    invoice_id: str,
    customer_id: str,
    subscription_id: str | None,
    amount_minor: int,
    currency: str,
    period_start: int,
    period_end: int,
    status: str = "open",
    description: str = "Subscription",
) -> dict[str, Any]:
    return {
        "id": invoice_id,
        "object": "invoice",
        "amount_due": amount_minor,
        "amount_paid": amount_minor if status == "paid" else 0,
        "amount_remaining": 0 if status == "paid" else amount_minor,
        "billing_reason": "subscription_cycle" if subscription_id else "manual",
        "collection_method": "charge_automatically",
        "created": period_start,
        "currency": currency.lower(),
        "customer": customer_id,
        "lines": {
            "object": "list",
            "data": [
                {
                    "id": new_id("il"),
                    "object": "line_item",
                    "amount": amount_minor,
                    "currency": currency.lower(),
                    "description": description,
                    "period": {"start": period_start, "end": period_end},
                    "quantity": 1,
                }
            ],
            "has_more": False,
            "total_count": 1,
        },
        "livemode": False,
        "parent": {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {"metadata": {}, "subscription": subscription_id},
        }
        if subscription_id
        else None,
        "period_end": period_end,
        "period_start": period_start,
        "status": status,
        "subtotal": amount_minor,
        "total": amount_minor,
    }


def event_envelope(
    event_type: str, obj: dict[str, Any], *, created: int | None = None
) -> dict[str, Any]:
    return {
        "id": new_id("evt"),
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": created or int(time.time()),
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def signed_body(
    event: dict[str, Any], secret: str, *, timestamp: int | None = None
) -> tuple[bytes, str]:
    """The raw body and its Stripe-Signature header, as Stripe would send them."""
    body = json.dumps(event, indent=2)
    header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp)
    return body.encode(), header
