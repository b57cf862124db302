"""Stripe Event envelopes to Concord routes; vendor field names stop here."""

from collections.abc import Callable
from typing import Any

from orchestrator.client import stripe_objects as objects
from orchestrator.client.canonical import (
    BusinessKeys,
    Ignored,
    NotAnEvent,
    Payment,
    Routed,
    SubscriptionChange,
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


def _invoice_finalized(body: dict[str, Any]) -> Routed | Ignored:
    invoice = objects.invoice(body["data"]["object"])
    return Routed(
        workflow=Workflow.INVOICE_GENERATED,
        canonical=invoice,
        keys=BusinessKeys(
            customer_id=invoice.customer_id,
            subscription_id=invoice.subscription_id,
            invoice_id=invoice.invoice_id,
            amount_minor=invoice.amount_minor,
            currency=invoice.currency,
            ordering_key=f"invoice:{invoice.invoice_id}",
            period=invoice.period_start.strftime("%Y-%m") if invoice.period_start else None,
            occurred_at=objects.timestamp(body.get("created")),
        ),
    )


def _payment(workflow: Workflow, *, failed: bool) -> Callable[[dict[str, Any]], Routed | Ignored]:
    def route(body: dict[str, Any]) -> Routed | Ignored:
        payment = objects.payment(body["data"]["object"], failed=failed)
        payment = payment.model_copy(update={"occurred_at": objects.timestamp(body.get("created"))})
        return Routed(workflow=workflow, canonical=payment, keys=_payment_keys(payment))

    return route


def _payment_keys(payment: Payment) -> BusinessKeys:
    return BusinessKeys(
        customer_id=payment.customer_id,
        subscription_id=payment.subscription_id,
        invoice_id=payment.invoice_id,
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        ordering_key=f"invoice:{payment.invoice_id}",
        occurred_at=payment.occurred_at,
    )


def _subscription(workflow: Workflow) -> Callable[[dict[str, Any]], Routed | Ignored]:
    def route(body: dict[str, Any]) -> Routed | Ignored:
        obj = body["data"]["object"]
        previous = body["data"].get("previous_attributes")
        before = None
        if workflow is Workflow.SUBSCRIPTION_AMENDED:
            before = objects.previous_items(obj, previous if isinstance(previous, dict) else {})
            if before is None:
                return Ignored(
                    reason="the update changes neither plan nor quantity",
                    keys=_subscription_keys(body),
                )
        change = SubscriptionChange(
            subscription=objects.subscription(obj),
            previous_items=before,
            effective_at=objects.timestamp(body.get("created")),
        )
        return Routed(workflow=workflow, canonical=change, keys=_subscription_keys(body, change))

    return route


def _subscription_keys(
    body: dict[str, Any], change: SubscriptionChange | None = None
) -> BusinessKeys:
    if change is None:
        obj = body["data"]["object"]
        return BusinessKeys(
            customer_id=objects.ref_id(obj.get("customer")),
            subscription_id=objects.ref_id(obj.get("id")),
            occurred_at=objects.timestamp(body.get("created")),
        )
    sub = change.subscription
    return BusinessKeys(
        customer_id=sub.customer_id,
        subscription_id=sub.subscription_id,
        amount_minor=sub.contract_value_minor,
        currency=sub.currency,
        ordering_key=f"subscription:{sub.subscription_id}",
        period=sub.current_period_start.strftime("%Y-%m") if sub.current_period_start else None,
        occurred_at=objects.timestamp(body.get("created")),
    )


_ROUTES: dict[str, Callable[[dict[str, Any]], Routed | Ignored]] = {
    "customer.subscription.created": _subscription(Workflow.SUBSCRIPTION_ACTIVATED),
    "customer.subscription.updated": _subscription(Workflow.SUBSCRIPTION_AMENDED),
    "customer.subscription.deleted": _subscription(Workflow.SUBSCRIPTION_CANCELED),
    "invoice.finalized": _invoice_finalized,
    "invoice.paid": _payment(Workflow.INVOICE_PAID, failed=False),
    "invoice.payment_failed": _payment(Workflow.PAYMENT_FAILED, failed=True),
}


def route(body: dict[str, Any]) -> Routed | Ignored:
    """Decide what a verified Stripe event starts; raises NotAnEvent for unusable data."""
    _, event_type = event_identity(body)
    handler = _ROUTES.get(event_type)
    if handler is not None:
        return handler(body)
    reason = _RECORDED_ONLY.get(event_type, f"event type {event_type!r} starts no workflow")
    return Ignored(reason=reason, keys=_best_effort_keys(body))


def _best_effort_keys(body: dict[str, Any]) -> BusinessKeys:
    obj = body["data"]["object"]
    if obj.get("object") == "invoice":
        try:
            keys = _invoice_finalized(body).keys
            return keys.model_copy(update={"ordering_key": None})
        except NotAnEvent:
            pass
    return BusinessKeys(occurred_at=objects.timestamp(body.get("created")))
