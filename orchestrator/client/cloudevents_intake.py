"""CloudEvents 1.0 structured JSON for Concord's canonical event types."""

from typing import Any

from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from pydantic import ValidationError

from orchestrator.client.canonical import (
    BusinessKeys,
    CanonicalType,
    Ignored,
    Invoice,
    NotAnEvent,
    Routed,
    Workflow,
)


def parse(raw: bytes) -> tuple[dict[str, Any], Any]:
    """Validate a structured-mode CloudEvent; return (attributes, data) or raise NotAnEvent."""
    try:
        event = JSONFormat().read(None, raw)
    except (BaseCloudEventException, ValueError, KeyError, TypeError) as exc:
        raise NotAnEvent(f"not a CloudEvents 1.0 event: {exc}") from exc
    attributes = event.get_attributes()
    if attributes.get("specversion") != "1.0":
        raise NotAnEvent("specversion must be '1.0'")
    return attributes, event.get_data()


def route(event_type: str, data: Any) -> Routed | Ignored:
    if event_type != CanonicalType.INVOICE_GENERATED:
        known = ", ".join(t.value for t in CanonicalType)
        return Ignored(reason=f"event type {event_type!r} is not canonical (known: {known})")
    try:
        invoice = Invoice.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise NotAnEvent(f"data is not a canonical invoice ({problems})") from exc
    return Routed(
        workflow=Workflow.INVOICE_GENERATED,
        canonical=invoice,
        keys=BusinessKeys(
            customer_id=invoice.customer_id,
            subscription_id=invoice.subscription_id,
            invoice_id=invoice.invoice_id,
            amount_minor=invoice.amount_minor,
            currency=invoice.currency,
            period=invoice.period_start.strftime("%Y-%m") if invoice.period_start else None,
            ordering_key=f"invoice:{invoice.invoice_id}",
        ),
    )
