"""Pydantic I/O of CloudEvents intake beyond IntakeResponse: usage events and batches."""

from pydantic import BaseModel

from lineage.enums import EventStatus


class EventResult(BaseModel):
    """What became of one event: a transaction it started, or the usage summary that counts it."""

    id: str
    status: EventStatus
    duplicate: bool
    # Set for an event that starts (or was ignored into) a transaction of its own.
    correlation_id: str | None = None
    # Set for a usage event, which starts no transaction: search this key
    # (GET /v1/search?q=...) to find its period's summary once the period has closed.
    usage_key: str | None = None


class BatchResponse(BaseModel):
    """A CloudEvents batch, stored all or nothing in one commit."""

    accepted: int
    duplicates: int
    events: list[EventResult]
