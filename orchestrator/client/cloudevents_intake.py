"""CloudEvents 1.0 structured JSON for Concord's canonical event types."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from pydantic import ValidationError

from orchestrator.client.canonical import (
    BusinessKeys,
    CanonicalType,
    DealEvent,
    Ignored,
    Invoice,
    NotAnEvent,
    RenewalRiskIdentified,
    Routed,
    Workflow,
)
from orchestrator.client.usage import Metered, UsageRecorded

# How far ahead of our clock a meter's clock may run before its usage is refused.
_CLOCK_SKEW = timedelta(minutes=5)


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


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


def route(event_type: str, data: Any) -> Routed | Ignored | Metered:
    if event_type == CanonicalType.USAGE_RECORDED:
        try:
            usage = UsageRecorded.model_validate(data)
        except ValidationError as exc:
            raise NotAnEvent(f"data is not a canonical usage record ({_problems(exc)})") from exc
        # Usage of a period that has not begun would wait, unposted, until that period closes.
        if usage.occurred_at > datetime.now(UTC) + _CLOCK_SKEW:
            raise NotAnEvent(f"data.occurred_at {usage.occurred_at.isoformat()} is in the future")
        return Metered(usage=usage)
    if event_type == CanonicalType.RENEWAL_RISK_IDENTIFIED:
        return _renewal_risk(data)
    if event_type != CanonicalType.INVOICE_GENERATED:
        known = ", ".join(t.value for t in CanonicalType)
        return Ignored(reason=f"event type {event_type!r} is not canonical (known: {known})")
    try:
        invoice = Invoice.model_validate(data)
    except ValidationError as exc:
        raise NotAnEvent(f"data is not a canonical invoice ({_problems(exc)})") from exc
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


def _renewal_risk(data: Any) -> Routed:
    try:
        signal = RenewalRiskIdentified.model_validate(data)
    except ValidationError as exc:
        raise NotAnEvent(f"data is not a renewal-risk signal ({_problems(exc)})") from exc
    deal = DealEvent(
        deal_id=signal.deal_id or signal.subscription_id,
        property_name="renewal_risk",
        property_value=signal.risk,
        source_id=signal.subscription_id,
        occurred_at=signal.occurred_at,
        note=signal.reason,
    )
    return Routed(
        workflow=Workflow.RENEWAL_RISK,
        canonical=deal,
        keys=BusinessKeys(
            subscription_id=signal.subscription_id,
            ordering_key=f"deal:{deal.deal_id}",
            occurred_at=signal.occurred_at,
        ),
    )


def parse_batch(raw: bytes) -> list[tuple[dict[str, Any], bytes]]:
    """Split a CloudEvents JSON batch (a JSON array of structured events) into single events:
    each as stored (the JSON object) and as parse() reads it (bytes)."""
    try:
        items = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotAnEvent(f"the batch is not valid JSON: {exc}") from exc
    if not isinstance(items, list):
        raise NotAnEvent("a CloudEvents batch is a JSON array of events")
    events: list[tuple[dict[str, Any], bytes]] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise NotAnEvent(f"event {index} of the batch is not a JSON object")
        events.append((item, json.dumps(item, separators=(",", ":")).encode()))
    return events
