"""Concord's canonical model: vendor payloads are mapped into these once, at intake."""

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Workflow(StrEnum):
    INVOICE_GENERATED = "invoice_generated"


class CanonicalType(StrEnum):
    """CloudEvents `type` values accepted on POST /v1/events."""

    INVOICE_GENERATED = "com.concord.invoice.generated"


class InvoiceLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = None
    amount_minor: int
    quantity: int | None = None


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


class BusinessKeys(BaseModel):
    """The columns a transaction is found and grouped by."""

    customer_id: str | None = None
    subscription_id: str | None = None
    invoice_id: str | None = None
    amount_minor: int | None = None
    currency: str | None = None
    period: str | None = None
    occurred_at: datetime | None = None


class Routed(BaseModel):
    """An event Concord acts on: the workflow to run and its canonical input."""

    workflow: Workflow
    keys: BusinessKeys
    canonical: Invoice


class Ignored(BaseModel):
    """An event Concord records and does not act on, with the reason kept."""

    reason: str
    # Kept when the payload names them, so an ignored event is still found by its IDs.
    keys: BusinessKeys = Field(default_factory=BusinessKeys)


class NotAnEvent(ValueError):
    """The JSON parsed but is not an event of the claimed kind; the message says what is missing."""
