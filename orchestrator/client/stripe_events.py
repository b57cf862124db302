"""Stripe Event envelopes to Concord routes; vendor field names stop here."""

from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from orchestrator.client.canonical import (
    BusinessKeys,
    Ignored,
    Invoice,
    InvoiceLine,
    NotAnEvent,
    Routed,
    Workflow,
)

STRIPE_SOURCE = "stripe"

_RECORDED_ONLY = {
    "invoice.created": "draft invoices are recorded, not posted; invoice.finalized posts them",
}


def event_identity(body: Any) -> tuple[str, str]:
    """Return (event id, type) of a Stripe Event envelope, or raise NotAnEvent."""
    if not isinstance(body, dict):
        raise NotAnEvent("a Stripe event is a JSON object")
    if body.get("object", "event") != "event":
        raise NotAnEvent(f"object is {body.get('object')!r}, not 'event'")
    event_id, event_type, data = body.get("id"), body.get("type"), body.get("data")
    if not isinstance(event_id, str) or not event_id:
        raise NotAnEvent("the event has no string 'id'")
    if not isinstance(event_type, str) or not event_type:
        raise NotAnEvent("the event has no string 'type'")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise NotAnEvent("the event has no 'data.object'")
    return event_id, event_type


def route(body: dict[str, Any]) -> Routed | Ignored:
    """Decide what a verified Stripe event starts; raises NotAnEvent for unusable data."""
    _, event_type = event_identity(body)
    if event_type != "invoice.finalized":
        reason = _RECORDED_ONLY.get(event_type, f"event type {event_type!r} starts no workflow")
        return Ignored(reason=reason, keys=_best_effort_keys(body))
    invoice = _invoice(body["data"]["object"])
    return Routed(
        workflow=Workflow.INVOICE_GENERATED, canonical=invoice, keys=_invoice_keys(invoice, body)
    )


def _invoice_keys(invoice: Invoice, body: dict[str, Any]) -> BusinessKeys:
    return BusinessKeys(
        customer_id=invoice.customer_id,
        subscription_id=invoice.subscription_id,
        invoice_id=invoice.invoice_id,
        amount_minor=invoice.amount_minor,
        currency=invoice.currency,
        period=invoice.period_start.strftime("%Y-%m") if invoice.period_start else None,
        occurred_at=_timestamp(body.get("created")),
    )


def _best_effort_keys(body: dict[str, Any]) -> BusinessKeys:
    obj = body["data"]["object"]
    if obj.get("object") == "invoice":
        try:
            return _invoice_keys(_invoice(obj), body)
        except NotAnEvent:
            pass
    return BusinessKeys(occurred_at=_timestamp(body.get("created")))


def _invoice(obj: dict[str, Any]) -> Invoice:
    customer = obj.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    lines = obj.get("lines", {}).get("data", []) if isinstance(obj.get("lines"), dict) else []
    try:
        return Invoice(
            invoice_id=obj.get("id"),
            customer_id=customer,
            subscription_id=_subscription_id(obj),
            amount_minor=obj.get("total", obj.get("amount_due")),
            currency=str(obj.get("currency", "")).upper(),
            period_start=_timestamp(obj.get("period_start")),
            period_end=_timestamp(obj.get("period_end")),
            lines=[
                InvoiceLine(
                    description=line.get("description"),
                    amount_minor=line.get("amount", 0),
                    quantity=line.get("quantity"),
                )
                for line in lines
                if isinstance(line, dict)
            ],
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise NotAnEvent(f"data.object is not a usable invoice ({problems})") from exc


def _subscription_id(obj: dict[str, Any]) -> str | None:
    # API versions from 2025 move the subscription under parent.subscription_details.
    parent = obj.get("parent") or {}
    details = parent.get("subscription_details") if isinstance(parent, dict) else None
    value = details.get("subscription") if isinstance(details, dict) else obj.get("subscription")
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else None


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    return None
