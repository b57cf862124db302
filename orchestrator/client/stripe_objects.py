"""Stripe API objects (current and legacy shapes) to canonical models."""

from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from orchestrator.client.canonical import (
    Invoice,
    InvoiceLine,
    NotAnEvent,
    Payment,
    Subscription,
    SubscriptionItem,
)


def timestamp(value: Any) -> datetime | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    return None


def ref_id(value: Any) -> str | None:
    """A Stripe reference is an ID string or, when expanded, an object with an id."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else None


M = TypeVar("M", bound=BaseModel)


def _build(model: type[M], what: str, **fields: Any) -> M:
    try:
        return model(**fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise NotAnEvent(f"data.object is not a usable {what} ({problems})") from exc


def invoice(obj: dict[str, Any]) -> Invoice:
    lines = obj.get("lines", {}).get("data", []) if isinstance(obj.get("lines"), dict) else []
    return _build(
        Invoice,
        "invoice",
        invoice_id=obj.get("id"),
        customer_id=ref_id(obj.get("customer")),
        subscription_id=invoice_subscription(obj),
        amount_minor=obj.get("total", obj.get("amount_due")),
        currency=str(obj.get("currency", "")).upper(),
        period_start=timestamp(obj.get("period_start")),
        period_end=timestamp(obj.get("period_end")),
        lines=[
            InvoiceLine(
                description=line.get("description"),
                amount_minor=line.get("amount", 0),
                quantity=line.get("quantity"),
                **line_pricing(line),
            )
            for line in lines
            if isinstance(line, dict)
        ],
    )


def line_pricing(line: dict[str, Any]) -> dict[str, str | None]:
    """A line's price and product: `pricing.price_details` since 2025, `price` or `plan` before."""
    pricing = line.get("pricing")
    details = pricing.get("price_details") if isinstance(pricing, dict) else None
    candidates = [(details, "price"), (line.get("price"), "id"), (line.get("plan"), "id")]
    for candidate, price_key in candidates:
        if isinstance(candidate, dict):
            price, product = ref_id(candidate.get(price_key)), ref_id(candidate.get("product"))
            if price or product:
                return {"price_id": price, "product_id": product}
    return {"price_id": None, "product_id": None}


def invoice_subscription(obj: dict[str, Any]) -> str | None:
    # API versions from 2025 move the subscription under parent.subscription_details.
    parent = obj.get("parent") or {}
    details = parent.get("subscription_details") if isinstance(parent, dict) else None
    if isinstance(details, dict):
        return ref_id(details.get("subscription"))
    return ref_id(obj.get("subscription"))


def payment(obj: dict[str, Any], *, failed: bool) -> Payment:
    error = obj.get("last_finalization_error") or {}
    return _build(
        Payment,
        "invoice payment",
        invoice_id=obj.get("id"),
        customer_id=ref_id(obj.get("customer")),
        subscription_id=invoice_subscription(obj),
        amount_minor=obj.get("amount_due") if failed else obj.get("amount_paid", obj.get("total")),
        currency=str(obj.get("currency", "")).upper(),
        attempt_count=obj.get("attempt_count") or 0,
        next_attempt_at=timestamp(obj.get("next_payment_attempt")) if failed else None,
        failure_message=error.get("message") if isinstance(error, dict) else None,
    )


def items(obj: dict[str, Any]) -> list[SubscriptionItem]:
    """Items of a subscription: `items.data[].price` now, a single `plan` in the legacy shape."""
    listed = obj.get("items")
    if isinstance(listed, dict) and isinstance(listed.get("data"), list):
        return [_item(entry) for entry in listed["data"] if isinstance(entry, dict)]
    plan = obj.get("plan")
    if isinstance(plan, dict):
        return [
            _build(
                SubscriptionItem,
                "subscription plan",
                price_id=plan.get("id"),
                product_id=ref_id(plan.get("product")),
                quantity=obj.get("quantity", 1),
                unit_amount_minor=plan.get("amount"),
                interval=plan.get("interval"),
                interval_count=plan.get("interval_count") or 1,
            )
        ]
    raise NotAnEvent("the subscription has neither items nor a plan")


def _item(entry: dict[str, Any]) -> SubscriptionItem:
    candidate = entry.get("price") if isinstance(entry.get("price"), dict) else entry.get("plan")
    price: dict[str, Any] = candidate if isinstance(candidate, dict) else {}
    nested = price.get("recurring")
    recurring: dict[str, Any] = nested if isinstance(nested, dict) else price
    return _build(
        SubscriptionItem,
        "subscription item",
        price_id=price.get("id"),
        product_id=ref_id(price.get("product")),
        quantity=entry.get("quantity", 1),
        unit_amount_minor=price.get("unit_amount", price.get("amount")),
        interval=recurring.get("interval"),
        interval_count=recurring.get("interval_count") or 1,
    )


def _period(obj: dict[str, Any], edge: str) -> datetime | None:
    """The subscription's current period; since API version 2025-03-31 Stripe sends it on each
    item instead (all items of a subscription share one billing period)."""
    if obj.get(edge) is not None:
        return timestamp(obj[edge])
    listed = obj.get("items")
    data = listed.get("data") if isinstance(listed, dict) else None
    first = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
    return timestamp(first.get(edge))


def subscription(obj: dict[str, Any]) -> Subscription:
    listed = items(obj)
    currency = obj.get("currency") or (obj.get("plan") or {}).get("currency", "")
    return _build(
        Subscription,
        "subscription",
        subscription_id=obj.get("id"),
        customer_id=ref_id(obj.get("customer")),
        status=obj.get("status") or "unknown",
        currency=str(currency).upper(),
        items=listed,
        current_period_start=_period(obj, "current_period_start"),
        current_period_end=_period(obj, "current_period_end"),
        ended_at=timestamp(obj.get("ended_at") or obj.get("canceled_at")),
    )


def previous_items(obj: dict[str, Any], previous: dict[str, Any]) -> list[SubscriptionItem] | None:
    """What the plan and quantity were before an update; None when neither changed."""
    if not {"items", "plan", "quantity"} & previous.keys():
        return None
    before = {**obj, **previous}
    if "plan" in previous and "items" not in previous:
        before.pop("items", None)
    return items(before)
