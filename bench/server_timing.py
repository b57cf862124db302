"""The API's own answer times and event-loop lag, read from its /metrics histograms
(api/request_metrics.py, api/loop_lag.py).

A sender on the same two cores measures its own scheduling too; the server's histogram says
how much of an acknowledgement's time the API itself spent, so a missed target can be split
between the two.
"""

import httpx
from prometheus_client.parser import text_string_to_metric_families

REQUESTS = "concord_api_request_duration_seconds"
LOOP_LAG = "concord_api_event_loop_lag_seconds"
INTAKE = {"method": "POST", "route": "/v1/webhooks/stripe"}


async def scrape(api_url: str) -> str:
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as client:
        response = await client.get("/metrics")
        response.raise_for_status()
    return response.text


def cumulative_buckets(exposition: str, family: str, **labels: str) -> dict[float, float]:
    """Upper bound in seconds -> observations so far of at most that long, summed over the
    series of `family` whose labels include `labels`."""
    out: dict[float, float] = {}
    for found in text_string_to_metric_families(exposition):
        if found.name != family:
            continue
        for sample in found.samples:
            if sample.name.endswith("_bucket") and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                le = float(sample.labels["le"])
                out[le] = out.get(le, 0.0) + sample.value
    return out


def share_within(before: dict[float, float], after: dict[float, float], bound_s: float) -> float:
    """Percent of the answers between two readings that took at most `bound_s` (a bucket edge)."""
    total = after[float("inf")] - before.get(float("inf"), 0.0)
    within = after[bound_s] - before.get(bound_s, 0.0)
    return 100.0 * within / total if total else float("nan")


def quantile_bound(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The smallest bucket edge (seconds) that at least q percent of the answers between two
    readings stayed within: an upper bound of their q-th percentile."""
    total = after[float("inf")] - before.get(float("inf"), 0.0)
    for le in sorted(after):
        if after[le] - before.get(le, 0.0) >= q / 100 * total:
            return le
    return float("inf")
