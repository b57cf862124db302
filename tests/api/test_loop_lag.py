"""The event-loop lag the API reports on /metrics is the time its loop could not run."""

import asyncio
import time

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from api import loop_lag

FAMILY = "concord_api_event_loop_lag_seconds"


def _over(registry: CollectorRegistry, bound: str) -> float:
    """Samples so far that woke more than `bound` seconds late."""
    buckets = {
        sample.labels["le"]: sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == f"{FAMILY}_bucket"
    }
    return buckets["+Inf"] - buckets[bound]


async def test_a_blocked_loop_shows_as_lag() -> None:
    registry = CollectorRegistry()
    histogram = loop_lag.lag_histogram(registry)
    watcher = asyncio.create_task(loop_lag.watch(histogram, interval_s=0.01))
    try:
        await asyncio.sleep(0.1)
        before = (_over(registry, "0.1"), _over(registry, "0.25"))
        time.sleep(0.15)  # blocks the loop, as a synchronous call in a route would
        await asyncio.sleep(0.05)
        after = (_over(registry, "0.1"), _over(registry, "0.25"))
    finally:
        watcher.cancel()

    # The sample that spanned the block woke 0.1-0.25 s late.
    assert after[0] - before[0] >= 1
    assert after[1] == before[1]


async def test_metrics_exposes_the_api_loop_lag(client: httpx.AsyncClient) -> None:
    await asyncio.sleep(0.2)  # a few samples of the running API's watcher

    families = {
        f.name: f for f in text_string_to_metric_families((await client.get("/metrics")).text)
    }

    counts = [s.value for s in families[FAMILY].samples if s.name == f"{FAMILY}_count"]
    assert counts
    assert counts[0] >= 2
