"""HubSpot webhook batches to Concord routes: each event in a batch is its own inbox row."""

from datetime import UTC, datetime
from typing import Any

from orchestrator.client.canonical import (
    BusinessKeys,
    DealEvent,
    Ignored,
    NotAnEvent,
    Routed,
    Workflow,
)

HUBSPOT_SOURCE = "hubspot"


def batch(body: Any) -> list[dict[str, Any]]:
    """HubSpot posts a JSON array of events; anything else is refused."""
    if not isinstance(body, list) or not body:
        raise NotAnEvent("a HubSpot webhook body is a non-empty JSON array of events")
    for index, event in enumerate(body):
        if not isinstance(event, dict):
            raise NotAnEvent(f"event {index} is not an object")
        if not isinstance(event.get("eventId"), int | str) or event.get("eventId") in ("", None):
            raise NotAnEvent(f"event {index} has no eventId")
        if not isinstance(event.get("subscriptionType"), str):
            raise NotAnEvent(f"event {index} has no subscriptionType")
    return body


def event_type(event: dict[str, Any]) -> str:
    name = event.get("propertyName")
    return f"{event['subscriptionType']}:{name}" if name else str(event["subscriptionType"])


def route(event: dict[str, Any]) -> Routed | Ignored:
    kind = event["subscriptionType"]
    name, value = event.get("propertyName"), event.get("propertyValue")
    occurred = event.get("occurredAt")
    occurred_at = (
        datetime.fromtimestamp(occurred / 1000, UTC) if isinstance(occurred, int) else None
    )
    source_id = str(event["sourceId"]) if event.get("sourceId") else None
    if kind == "deal.propertyChange" and name == "dealstage" and value == "closedwon":
        if source_id and source_id.startswith("sub_"):
            # Concord wrote this deal from a billing subscription: there is nothing to create.
            return Ignored(
                reason=f"the deal's subscription {source_id} already exists in billing",
                keys=BusinessKeys(subscription_id=source_id, occurred_at=occurred_at),
            )
        workflow = Workflow.DEAL_CLOSED_WON
    elif kind == "deal.propertyChange" and name == "renewal_risk" and value:
        workflow = Workflow.RENEWAL_RISK
    else:
        return Ignored(
            reason=f"HubSpot {event_type(event)} starts no workflow",
            keys=BusinessKeys(occurred_at=occurred_at),
        )
    if event.get("objectId") in (None, ""):
        raise NotAnEvent(f"{event_type(event)} event {event['eventId']} has no objectId")
    deal = DealEvent(
        deal_id=str(event["objectId"]),
        portal_id=str(event.get("portalId") or "") or None,
        property_name=str(name),
        property_value=str(value),
        source_id=str(event["sourceId"]) if event.get("sourceId") else None,
        occurred_at=occurred_at,
    )
    subscription = deal.source_id if deal.source_id and deal.source_id.startswith("sub_") else None
    return Routed(
        workflow=workflow,
        canonical=deal,
        keys=BusinessKeys(
            subscription_id=subscription,
            ordering_key=f"deal:{deal.deal_id}",
            occurred_at=occurred_at,
        ),
    )
