"""Billing state, time and events: what the invoice lifecycle and subscriptions build on.

Objects live in the system's RecordStore as Stripe JSON. Time is the sandbox clock (wall time
plus an offset that /_admin/clock advances), so a month of billing can pass in a test.
"""

import time
from collections.abc import Callable
from typing import Any

from sandbox import billing_objects as obj
from sandbox.billing_objects import InvalidRequest
from sandbox.store import RecordStore

Emit = Callable[[dict[str, Any]], None]


class BillingCore:
    def __init__(self, store: RecordStore, *, on_event: Emit | None = None) -> None:
        self.store = store
        self.on_event = on_event
        self.request: tuple[str | None, str | None] = (None, None)

    def now(self) -> int:
        offset = self.store.get("clock", "offset")
        return int(time.time()) + (int(offset.body["seconds"]) if offset else 0)

    def advance_clock(self, seconds: int) -> int:
        offset = self.store.get("clock", "offset")
        total = (int(offset.body["seconds"]) if offset else 0) + seconds
        if offset is None:
            self.store.insert("clock", "offset", external_id=None, body={"seconds": total}, meta={})
        else:
            self.store.update("clock", "offset", body={"seconds": total})
        self.run_due()
        return self.now()

    def run_due(self) -> None:
        """Whatever falls due when time passes; Billing renews and retries."""

    def load(self, kind: str, object_id: str, *, param: str = "id") -> dict[str, Any]:
        found = self.store.get(kind, object_id)
        if found is None:
            raise InvalidRequest(f"No such {kind}: '{object_id}'", param=param, status=404)
        return found.body

    def save(self, body: dict[str, Any]) -> dict[str, Any]:
        kind = body["object"]
        external_id = (body.get("metadata") or {}).get("external_id")
        if self.store.get(kind, body["id"]) is None:
            period = obj.period_of(body.get("created") or self.now())
            self.store.insert(
                kind, body["id"], external_id=external_id, body=body, meta={}, period=period
            )
        else:
            self.store.update(kind, body["id"], body=body)
        return body

    def emit(
        self, event_type: str, body: dict[str, Any], previous: dict[str, Any] | None = None
    ) -> None:
        event = obj.event(event_type, body, self.now(), previous=previous, request=self.request)
        self.save(event)
        if self.on_event is not None:
            self.on_event(event)
