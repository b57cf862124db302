"""Concord's canonical model: vendor payloads are mapped into these once, at intake."""

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Workflow(StrEnum):
    SUBSCRIPTION_ACTIVATED = "subscription_activated"
    SUBSCRIPTION_AMENDED = "subscription_amended"
    SUBSCRIPTION_CANCELED = "subscription_canceled"
    INVOICE_GENERATED = "invoice_generated"
    INVOICE_PAID = "invoice_paid"
    PAYMENT_FAILED = "payment_failed"
    DEAL_CLOSED_WON = "deal_closed_won"
    RENEWAL_RISK = "renewal_risk"
    USAGE_SUMMARY = "usage_summary"


class CanonicalType(StrEnum):
    """CloudEvents `type` values accepted on POST /v1/events."""

    INVOICE_GENERATED = "com.concord.invoice.generated"
    USAGE_RECORDED = "com.concord.usage.recorded"
    RENEWAL_RISK_IDENTIFIED = "com.concord.renewal_risk.identified"


class InvoiceLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = None
    amount_minor: int
    quantity: int | None = None
    # What the line bills, when billing says: the ERP books it by product (mappings.toml).
    price_id: str | None = None
    product_id: str | None = None


class Invoice(BaseModel):
    """A finalized billing invoice; money in integer minor units with an ISO 4217 currency."""

    model_config = ConfigDict(extra="forbid")

    invoice_id: str = Field(min_length=1, max_length=255)
    customer_id: str = Field(min_length=1, max_length=255)
    subscription_id: str | None = Field(default=None, max_length=255)
    amount_minor: int
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    period_start: datetime | None = None
    period_end: datetime | None = None
    lines: list[InvoiceLine] = Field(default_factory=list)


_MONTHS = {"day": 1 / 30, "week": 12 / 52, "month": 1, "year": 12}


class SubscriptionItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    price_id: str
    product_id: str | None = None
    quantity: int = Field(ge=0)
    unit_amount_minor: int
    interval: str = Field(pattern=r"^(day|week|month|year)$")
    interval_count: int = Field(default=1, ge=1)

    @property
    def annual_minor(self) -> int:
        months = _MONTHS[self.interval] * self.interval_count
        return round(self.unit_amount_minor * self.quantity * 12 / months)


class Subscription(BaseModel):
    """A billing subscription; its contract value is annualised, in minor units."""

    model_config = ConfigDict(extra="forbid")

    subscription_id: str = Field(min_length=1, max_length=255)
    customer_id: str = Field(min_length=1, max_length=255)
    status: str
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    items: list[SubscriptionItem]
    current_period_start: datetime | None = None
    current_period_end: datetime | None = None
    ended_at: datetime | None = None

    @property
    def contract_value_minor(self) -> int:
        return sum(item.annual_minor for item in self.items)


class SubscriptionChange(BaseModel):
    """A subscription event with what it replaced (for amendments and their compensation)."""

    model_config = ConfigDict(extra="forbid")

    subscription: Subscription
    previous_items: list[SubscriptionItem] | None = None
    effective_at: datetime | None = None

    @property
    def previous_contract_value_minor(self) -> int | None:
        if self.previous_items is None:
            return None
        return sum(item.annual_minor for item in self.previous_items)


class Payment(BaseModel):
    """A paid or failed invoice payment."""

    model_config = ConfigDict(extra="forbid")

    invoice_id: str = Field(min_length=1, max_length=255)
    customer_id: str = Field(min_length=1, max_length=255)
    subscription_id: str | None = None
    amount_minor: int
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    occurred_at: datetime | None = None
    attempt_count: int = 0
    next_attempt_at: datetime | None = None
    failure_message: str | None = None


class DealEvent(BaseModel):
    """A CRM deal change Concord acts on: won (quote-to-cash) or flagged as a renewal risk."""

    model_config = ConfigDict(extra="forbid")

    deal_id: str = Field(min_length=1, max_length=255)
    portal_id: str | None = None
    property_name: str
    property_value: str
    # The deal's external ID property: the billing subscription it belongs to, when it has one.
    source_id: str | None = None
    occurred_at: datetime | None = None
    # Why an analytics model flagged the risk, when it says (com.concord.renewal_risk.identified).
    note: str | None = Field(default=None, max_length=2000)


class RenewalRiskIdentified(BaseModel):
    """Data of `com.concord.renewal_risk.identified`: an analytics model's renewal-risk signal."""

    model_config = ConfigDict(extra="forbid")

    subscription_id: str = Field(min_length=1, max_length=255)
    risk: str = Field(min_length=1, max_length=50)
    # The CRM deal of the subscription when the sender knows it; else Concord's deal for the
    # subscription, whose external ID is the subscription ID.
    deal_id: str | None = Field(default=None, min_length=1, max_length=255)
    reason: str | None = Field(default=None, max_length=2000)
    occurred_at: datetime


class BusinessKeys(BaseModel):
    """The columns a transaction is found and grouped by."""

    customer_id: str | None = None
    subscription_id: str | None = None
    invoice_id: str | None = None
    amount_minor: int | None = None
    currency: str | None = None
    period: str | None = None
    ordering_key: str | None = None
    occurred_at: datetime | None = None


Canonical = Invoice | SubscriptionChange | Payment | DealEvent


class Routed(BaseModel):
    """An event Concord acts on: the workflow to run and its canonical input."""

    workflow: Workflow
    keys: BusinessKeys
    canonical: Canonical


class Ignored(BaseModel):
    """An event Concord records and does not act on, with the reason kept."""

    reason: str
    # Kept when the payload names them, so an ignored event is still found by its IDs.
    keys: BusinessKeys = Field(default_factory=BusinessKeys)


class NotAnEvent(ValueError):
    """The JSON parsed but is not an event of the claimed kind; the message says what is missing."""
