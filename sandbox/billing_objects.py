"""Stripe API objects, field for field as in Stripe's own fixtures (../shared/fixtures/stripe).

Pure builders and arithmetic: amounts are integer minor units, timestamps Unix seconds.
"""

import calendar
import secrets
from datetime import UTC, datetime
from typing import Any

API_VERSION = "2025-03-31.basil"
# Stripe's test payment methods that attach but whose charges fail.
FAILING_PAYMENT_METHODS = frozenset(
    {
        "pm_card_chargeCustomerFail",
        "pm_card_chargeDeclined",
        "pm_card_chargeDeclinedInsufficientFunds",
    }
)
DEFAULT_PAYMENT_METHOD = "pm_card_visa"


class InvalidRequest(ValueError):
    """Stripe's invalid_request_error: the message and the parameter at fault."""

    def __init__(self, message: str, *, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.param = param
        self.status = status


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def stripe_error(
    message: str, *, kind: str = "invalid_request_error", param: str | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"type": kind, "message": message}
    if param is not None:
        error["param"] = param
    return {"error": error}


def period_of(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m")


def add_interval(ts: int, interval: str, count: int = 1) -> int:
    """ts plus count months or years, day clamped to the month's end (Jan 31 -> Feb 29)."""
    moment = datetime.fromtimestamp(ts, UTC)
    months = count * (12 if interval == "year" else 1)
    if interval not in {"month", "year"}:
        raise InvalidRequest(f"unsupported interval {interval!r}", param="recurring[interval]")
    year, month = divmod(moment.month - 1 + months, 12)
    year, month = moment.year + year, month + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


def integer(params: dict[str, Any], key: str, *, default: int | None = None, low: int = 0) -> int:
    raw = params.get(key)
    if raw is None or raw == "":
        if default is None:
            raise InvalidRequest(f"Missing required param: {key}.", param=key)
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise InvalidRequest(f"Invalid integer: {raw}", param=key) from None
    if value < low:
        raise InvalidRequest(f"{key} must be at least {low}", param=key)
    return value


def required(params: dict[str, Any], key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"Missing required param: {key}.", param=key)
    return value


def metadata(params: dict[str, Any]) -> dict[str, str]:
    value = params.get("metadata") or {}
    if not isinstance(value, dict):
        raise InvalidRequest("Invalid hash", param="metadata")
    return {str(k): str(v) for k, v in value.items()}


def customer(params: dict[str, Any], now: int) -> dict[str, Any]:
    settings = params.get("invoice_settings") or {}
    method = (
        settings.get("default_payment_method")
        or params.get("payment_method")
        or DEFAULT_PAYMENT_METHOD
    )
    return {
        "id": new_id("cus"),
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": now,
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": params.get("description"),
        "email": params.get("email"),
        "invoice_prefix": secrets.token_hex(4).upper(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": method,
            "footer": None,
        },
        "livemode": False,
        "metadata": metadata(params),
        "name": params.get("name"),
        "next_invoice_sequence": 1,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }


def product(params: dict[str, Any], now: int) -> dict[str, Any]:
    return {
        "id": params.get("id") or new_id("prod"),
        "object": "product",
        "active": True,
        "created": now,
        "default_price": None,
        "description": params.get("description"),
        "images": [],
        "livemode": False,
        "marketing_features": [],
        "metadata": metadata(params),
        "name": required(params, "name"),
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": None,
        "tax_code": None,
        "type": "service",
        "unit_label": params.get("unit_label"),
        "updated": now,
        "url": None,
    }


def price(params: dict[str, Any], now: int) -> dict[str, Any]:
    currency = required(params, "currency").lower()
    if len(currency) != 3 or not currency.isalpha():
        raise InvalidRequest(f"Invalid currency: {currency}", param="currency")
    unit_amount = integer(params, "unit_amount")
    recurring = params.get("recurring")
    if recurring is not None:
        interval = recurring.get("interval")
        if interval not in {"month", "year"}:
            raise InvalidRequest("Invalid recurring[interval]", param="recurring[interval]")
        usage_type = recurring.get("usage_type") or "licensed"
        if usage_type not in {"licensed", "metered"}:
            raise InvalidRequest("Invalid recurring[usage_type]", param="recurring[usage_type]")
        recurring = {
            "interval": interval,
            "interval_count": integer(recurring, "interval_count", default=1, low=1),
            "meter": None,
            "usage_type": usage_type,
            "trial_period_days": None,
        }
    return {
        "id": new_id("price"),
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": now,
        "currency": currency,
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": params.get("lookup_key"),
        "metadata": metadata(params),
        "nickname": params.get("nickname"),
        "product": required(params, "product"),
        "recurring": recurring,
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring" if recurring else "one_time",
        "unit_amount": unit_amount,
        "unit_amount_decimal": str(unit_amount),
    }


def subscription_item(
    price_obj: dict[str, Any], quantity: int, sub_id: str, now: int, start: int, end: int
) -> dict[str, Any]:
    return {
        "id": new_id("si"),
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": now,
        "current_period_end": end,
        "current_period_start": start,
        "discounts": [],
        "metadata": {},
        "price": price_obj,
        "quantity": quantity,
        "subscription": sub_id,
        "tax_rates": [],
    }


def subscription(
    customer_id: str, currency: str, now: int, params: dict[str, Any]
) -> dict[str, Any]:
    sub_id = new_id("sub")
    return {
        "id": sub_id,
        "object": "subscription",
        "billing_cycle_anchor": now,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "collection_method": "charge_automatically",
        "created": now,
        "currency": currency,
        "current_period_end": now,
        "current_period_start": now,
        "customer": customer_id,
        "days_until_due": None,
        "default_payment_method": None,
        "description": params.get("description"),
        "discounts": [],
        "ended_at": None,
        "items": {
            "object": "list",
            "data": [],
            "has_more": False,
            "total_count": 0,
            "url": f"/v1/subscription_items?subscription={sub_id}",
        },
        "latest_invoice": None,
        "livemode": False,
        "metadata": metadata(params),
        "start_date": now,
        "status": "incomplete",
        "test_clock": None,
    }


def line_item(
    *,
    amount: int,
    currency: str,
    description: str,
    period: tuple[int, int],
    quantity: int,
    subscription_id: str | None,
    item: dict[str, Any] | None = None,
    proration: bool = False,
    invoice_item: str | None = None,
) -> dict[str, Any]:
    parent: dict[str, Any]
    if invoice_item is not None:
        parent = {
            "type": "invoice_item_details",
            "invoice_item_details": {
                "invoice_item": invoice_item,
                "proration": proration,
                "subscription": subscription_id,
            },
        }
    else:
        parent = {
            "type": "subscription_item_details",
            "subscription_item_details": {
                "invoice_item": None,
                "proration": proration,
                "subscription": subscription_id,
                "subscription_item": item["id"] if item else None,
            },
        }
    return {
        "id": new_id("il"),
        "object": "line_item",
        "amount": amount,
        "currency": currency,
        "description": description,
        "discount_amounts": [],
        "discountable": True,
        "discounts": [],
        "invoice": None,
        "livemode": False,
        "metadata": {},
        "parent": parent,
        "period": {"start": period[0], "end": period[1]},
        "pretax_credit_amounts": [],
        "pricing": {
            "type": "price_details",
            "price_details": {"price": item["price"]["id"], "product": item["price"]["product"]}
            if item
            else None,
            "unit_amount_decimal": str(item["price"]["unit_amount"]) if item else None,
        },
        "quantity": quantity,
        "subtotal": amount,
        "taxes": [],
    }


def invoice(
    cust: dict[str, Any],
    *,
    currency: str,
    lines: list[dict[str, Any]],
    period: tuple[int, int],
    billing_reason: str,
    subscription_id: str | None,
    now: int,
) -> dict[str, Any]:
    invoice_id = new_id("in")
    for line in lines:
        line["invoice"] = invoice_id
    total = sum(line["amount"] for line in lines)
    number = f"{cust['invoice_prefix']}-{cust['next_invoice_sequence']:04d}"
    cust["next_invoice_sequence"] += 1
    return {
        "id": invoice_id,
        "object": "invoice",
        "account_country": "US",
        "account_name": "Concord Sandbox",
        "amount_due": max(total, 0),
        "amount_overpaid": 0,
        "amount_paid": 0,
        "amount_remaining": max(total, 0),
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": True,
        "billing_reason": billing_reason,
        "collection_method": "charge_automatically",
        "created": now,
        "currency": currency,
        "customer": cust["id"],
        "customer_email": cust.get("email"),
        "customer_name": cust.get("name"),
        "default_payment_method": None,
        "description": None,
        "due_date": None,
        "effective_at": None,
        "ending_balance": None,
        "hosted_invoice_url": None,
        "last_finalization_error": None,
        "lines": {
            "object": "list",
            "data": lines,
            "has_more": False,
            "total_count": len(lines),
            "url": f"/v1/invoices/{invoice_id}/lines",
        },
        "livemode": False,
        "metadata": {},
        "next_payment_attempt": None,
        "number": number,
        "parent": {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {"metadata": {}, "subscription": subscription_id},
        }
        if subscription_id
        else None,
        "period_end": period[1],
        "period_start": period[0],
        "starting_balance": 0,
        "status": "draft",
        "status_transitions": {
            "finalized_at": None,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        "subtotal": total,
        "subtotal_excluding_tax": total,
        "test_clock": None,
        "total": total,
        "total_excluding_tax": total,
        "total_taxes": [],
    }


def charge(inv: dict[str, Any], method: str, now: int) -> dict[str, Any]:
    failed = method in FAILING_PAYMENT_METHODS
    return {
        "id": new_id("ch"),
        "object": "charge",
        "amount": inv["amount_due"],
        "amount_captured": 0 if failed else inv["amount_due"],
        "amount_refunded": 0,
        "captured": not failed,
        "created": now,
        "currency": inv["currency"],
        "customer": inv["customer"],
        "description": f"Payment for Invoice {inv['number']}",
        "failure_code": "card_declined" if failed else None,
        "failure_message": "Your card was declined." if failed else None,
        "livemode": False,
        "metadata": {"invoice": inv["id"]},
        "outcome": {
            "network_status": "declined_by_network" if failed else "approved_by_network",
            "type": "issuer_declined" if failed else "authorized",
        },
        "paid": not failed,
        "payment_intent": new_id("pi"),
        "payment_method": method,
        "refunded": False,
        "status": "failed" if failed else "succeeded",
    }


def prorated(amount: int, remaining_s: int, period_s: int) -> int:
    """Stripe prorates to the second; round half away from zero to whole minor units."""
    if period_s <= 0:
        return 0
    numerator = amount * remaining_s
    sign = -1 if numerator < 0 else 1
    return sign * ((abs(numerator) * 2 + period_s) // (2 * period_s))


def event(
    event_type: str,
    obj: dict[str, Any],
    now: int,
    *,
    previous: dict[str, Any] | None = None,
    request: tuple[str | None, str | None] = (None, None),
) -> dict[str, Any]:
    data: dict[str, Any] = {"object": obj}
    if previous is not None:
        data["previous_attributes"] = previous
    return {
        "id": new_id("evt"),
        "object": "event",
        "api_version": API_VERSION,
        "created": now,
        "data": data,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": request[0], "idempotency_key": request[1]},
        "type": event_type,
    }
