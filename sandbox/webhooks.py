"""Deliver events as signed webhooks the way Stripe and HubSpot do: at least once, with retries
and backoff, and in no particular order.

Every event is delivered by its own task after a small random delay, so two events emitted in
order may arrive in the other order, as Stripe documents. A non-2xx answer or a transport error
is retried with exponential backoff (and jitter) up to max_attempts; each attempt is signed
afresh, because the signature covers the time of sending.
"""

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

# (body, url) -> the headers that sign it.
Signer = Callable[[bytes, str], dict[str, str]]


@dataclass
class Delivery:
    event_id: str
    event_type: str
    body: bytes
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    # The receiver's last answer (truncated), so a test can read what the receiver made of it.
    last_response: str | None = None
    state: str = "pending"  # pending | delivered | failed

    def as_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "type": self.event_type,
            "attempts": self.attempts,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "last_response": self.last_response,
            "state": self.state,
        }


@dataclass
class RetryPolicy:
    max_attempts: int = 8
    base_delay_s: float = 0.5
    max_delay_s: float = 60.0
    # Each first attempt waits up to this long, so deliveries do not keep emission order.
    reorder_s: float = 0.2
    timeout_s: float = 10.0

    def delay_s(self, attempt: int, rng: random.Random) -> float:
        backoff: float = min(self.max_delay_s, self.base_delay_s * 2.0 ** (attempt - 1))
        return backoff * rng.uniform(0.5, 1.0)


@dataclass
class WebhookSender:
    url: str
    sign: Signer
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    seed: int = 0
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _client: httpx.AsyncClient | None = None

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def enqueue(self, event_id: str, event_type: str, payload: Any) -> None:
        """Schedule delivery; must be called on the event loop that serves the sandbox."""
        body = json.dumps(payload, indent=2).encode()
        delivery = self.deliveries[event_id] = Delivery(event_id, event_type, body)
        self._spawn(delivery, initial_delay_s=self._rng.uniform(0, self.policy.reorder_s))

    def redeliver(self, event_id: str) -> bool:
        """Send an event again, as Stripe's "Resend" does: the receiver must see a duplicate."""
        delivery = self.deliveries.get(event_id)
        if delivery is None:
            return False
        delivery.state = "pending"
        self._spawn(delivery, initial_delay_s=0.0)
        return True

    def _spawn(self, delivery: Delivery, *, initial_delay_s: float) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(delivery, initial_delay_s))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, delivery: Delivery, initial_delay_s: float) -> None:
        await asyncio.sleep(initial_delay_s)
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.policy.timeout_s, follow_redirects=False)
        for attempt in range(1, self.policy.max_attempts + 1):
            delivery.attempts += 1
            headers = {"Content-Type": "application/json", **self.sign(delivery.body, self.url)}
            try:
                response = await self._client.post(self.url, content=delivery.body, headers=headers)
            except httpx.HTTPError as exc:
                delivery.last_status, delivery.last_error = None, repr(exc)
            else:
                delivery.last_status, delivery.last_error = response.status_code, None
                delivery.last_response = response.text[:1000]
                if response.is_success:
                    delivery.state = "delivered"
                    return
            if attempt < self.policy.max_attempts:
                await asyncio.sleep(self.policy.delay_s(attempt, self._rng))
        delivery.state = "failed"

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    async def idle(self, timeout_s: float = 30.0) -> bool:
        """Wait until no delivery is in flight; True if that happened within timeout_s."""
        deadline = time.monotonic() + timeout_s
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(set(self._tasks), timeout=max(0.0, deadline - time.monotonic()))
        return not self._tasks

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.aclose()
            self._client = None
