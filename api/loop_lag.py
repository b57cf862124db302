"""How late the API's event loop runs: the figure that says whether slow answers were waiting
for a core (or for a blocking call) rather than for the database.

A watcher sleeps a fixed interval over and over; whatever it oversleeps is the time the loop
could not run it, and every request on the loop waited as long. docs/performance.md uses it
to explain the intake acknowledgement's tail.
"""

import asyncio
import time

from prometheus_client import CollectorRegistry, Histogram

INTERVAL_S = 0.05
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def lag_histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram(
        "concord_api_event_loop_lag_seconds",
        f"How much later than asked a {INTERVAL_S} s sleep on the API's event loop woke up.",
        buckets=BUCKETS,
        registry=registry,
    )


async def watch(histogram: Histogram, interval_s: float = INTERVAL_S) -> None:
    """Runs until cancelled."""
    while True:
        start = time.perf_counter()
        await asyncio.sleep(interval_s)
        histogram.observe(max(0.0, time.perf_counter() - start - interval_s))
