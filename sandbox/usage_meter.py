"""A usage meter for the traffic generator: rated usage sent to Concord as CloudEvents batches.

It plays the metering pipeline a SaaS runs beside billing: every usage burst becomes a few
`com.concord.usage.recorded` events for the current period, and once, early in a run, a
backfill of last month's usage arrives (a meter catching up), so the first scheduled
aggregation has a closed period to summarise and the demo shows a summary posted to the ERP.
"""

import itertools
import json
import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

BATCH_TYPE = "application/cloudevents-batch+json"
SOURCE = "/sandbox/meter"
METRIC = "api_calls"
# Sign-ups seen before last month's backfill is sent.
BACKFILL_AFTER = 3
BACKFILL_EVENTS = 25


class UsageMeter:
    def __init__(
        self,
        client: httpx.Client,
        *,
        api_url: str,
        api_key: str,
        run: str,
        unit_amount_minor: int,
        seed: int,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client, self._url = client, f"{api_url.rstrip('/')}/v1/events"
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": BATCH_TYPE}
        self._run, self._unit, self._now = run, unit_amount_minor, now
        self._rng = random.Random(seed)
        self._ids = itertools.count()
        self._backfilled = False
        self.report: Counter[str] = Counter()

    def observe(
        self, subscriptions: list[dict[str, Any]], used: dict[str, Any] | None, qty: int
    ) -> None:
        """After each traffic action: meter a usage burst, and backfill once enough have signed up."""
        events: list[dict[str, Any]] = []
        if not self._backfilled and len(subscriptions) >= BACKFILL_AFTER:
            self._backfilled = True
            last_month = self._now().replace(day=1) - timedelta(days=1)
            for sub in subscriptions:
                for _ in range(BACKFILL_EVENTS):
                    day = last_month.replace(day=self._rng.randint(1, last_month.day))
                    events.append(self._event(sub, self._rng.randint(10, 500), day))
        if used is not None and qty > 0:
            # One burst arrives as several events, as a meter flushes per interval.
            parts = self._rng.randint(2, 6)
            for n in range(parts):
                events.append(
                    self._event(used, qty // parts + (qty % parts if n == 0 else 0), self._now())
                )
        if events:
            self._send(events)

    def _event(self, sub: dict[str, Any], quantity: int, at: datetime) -> dict[str, Any]:
        return {
            "specversion": "1.0",
            "id": f"{self._run}-u{next(self._ids)}",
            "source": SOURCE,
            "type": "com.concord.usage.recorded",
            "time": self._now().isoformat(),
            "datacontenttype": "application/json",
            "data": {
                "subscription_id": sub["id"],
                "customer_id": sub["customer"],
                "metric": METRIC,
                "quantity": quantity,
                "unit_amount_minor": self._unit,
                "currency": str(sub.get("currency") or "usd").upper(),
                "occurred_at": at.astimezone(UTC).isoformat(),
            },
        }

    def _send(self, events: list[dict[str, Any]]) -> None:
        body = json.dumps(events)
        for _attempt in range(3):
            try:
                response = self._client.post(self._url, content=body, headers=self._headers)
            except httpx.TransportError as exc:
                self.report[f"usage:{type(exc).__name__}"] += 1
                continue
            if response.status_code < 300:
                self.report["usage_events"] += len(events)
                return
            self.report[f"usage:{response.status_code}"] += 1
            # Only an overloaded or failing API is worth another try; the IDs make it safe.
            if response.status_code < 500 and response.status_code != 429:
                return
