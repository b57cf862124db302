"""Signed Stripe webhooks built from the vendor fixtures, and a sender that times each 2xx."""

import asyncio
import copy
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import stripe

from bench.common import WEBHOOK_SECRET

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "stripe" / "objects"


def _fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


@dataclass(frozen=True, slots=True)
class Delivery:
    invoice_id: str
    body: bytes
    headers: dict[str, str]


def deliveries(count: int, event_type: str = "invoice.finalized") -> list[Delivery]:
    """`count` Stripe events (objects/event.json carrying objects/invoice.json), each for a new
    invoice, signed now: built before the clock starts so signing is not measured."""
    envelope, invoice = _fixture("event.json"), _fixture("invoice.json")
    now = int(time.time())
    out = []
    for _ in range(count):
        obj = copy.deepcopy(invoice)
        obj.update(id=f"in_{secrets.token_hex(12)}", status="open")
        event = {
            **envelope,
            "id": f"evt_{secrets.token_hex(12)}",
            "type": event_type,
            "created": now,
            "data": {"object": obj},
        }
        body = json.dumps(event).encode()
        signature = stripe.WebhookSignature.generate_signature_header(
            body.decode(), WEBHOOK_SECRET, timestamp=now
        )
        headers = {"Stripe-Signature": str(signature), "Content-Type": "application/json"}
        out.append(Delivery(str(obj["id"]), body, headers))
    return out


@dataclass
class Sent:
    """What the sender saw: per delivery, when it went out (epoch s), its ack time and ID."""

    started_at: list[float] = field(default_factory=list)
    ack_s: list[float] = field(default_factory=list)
    correlation_ids: list[str] = field(default_factory=list)
    failures: int = 0
    retries: int = 0
    server_errors: int = 0


async def _post(session: aiohttp.ClientSession, delivery: Delivery, sent: Sent) -> None:
    """Deliver as Stripe does: a connection error or a 5xx is delivered again (the inbox answers
    a redelivery as a duplicate); the ack time runs from the first try to the 2xx."""
    wall = time.time()
    start = time.perf_counter()
    for attempt in range(4):
        try:
            async with session.post(
                "/v1/webhooks/stripe", data=delivery.body, headers=delivery.headers
            ) as response:
                status = response.status
                answer = await response.read()
        except aiohttp.ClientError:
            if attempt == 3:
                raise
            sent.retries += 1
            continue
        if status < 500 or attempt == 3:
            break
        sent.retries += 1
        sent.server_errors += 1
    elapsed = time.perf_counter() - start
    if status not in (200, 202):
        sent.failures += 1
        return
    sent.started_at.append(wall)
    sent.ack_s.append(elapsed)
    sent.correlation_ids.append(str(json.loads(answer)["correlation_id"]))


def _session(api_url: str, connections: int) -> aiohttp.ClientSession:
    # aiohttp rather than httpx: at 64 requests in flight httpx's connection pool cost the
    # sender about 4 ms of CPU per request against aiohttp's 0.3 (docs/performance.md), CPU
    # the system under test shares. Idle connections are dropped before uvicorn's 5 s
    # keep-alive closes them under a request.
    connector = aiohttp.TCPConnector(limit=connections, keepalive_timeout=2.0)
    return aiohttp.ClientSession(
        api_url, connector=connector, timeout=aiohttp.ClientTimeout(total=60)
    )


async def send_all(api_url: str, items: list[Delivery], *, concurrency: int = 64) -> Sent:
    """As fast as the API takes them, `concurrency` requests in flight."""
    sent = Sent()
    queue: asyncio.Queue[Delivery] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    async with _session(api_url, concurrency) as session:

        async def lane() -> None:
            while not queue.empty():
                await _post(session, queue.get_nowait(), sent)

        await asyncio.gather(*(lane() for _ in range(concurrency)))
    return sent


async def send_at_rate(api_url: str, items: list[Delivery], *, rate_per_s: float) -> Sent:
    """Open loop: one delivery every 1/rate seconds whatever the answers do, so a slow answer
    shows as latency rather than as a lower offered rate."""
    sent = Sent()
    async with _session(api_url, 200) as session:
        tasks = []
        start = time.perf_counter()
        for i, item in enumerate(items):
            delay = start + i / rate_per_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_post(session, item, sent)))
        await asyncio.gather(*tasks)
    return sent
