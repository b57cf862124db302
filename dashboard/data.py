"""Cached loaders over the API: one minute for live tiles, fifteen for history; the SLA
figures uncached, as the API shares them.

Every loader takes the API URL and the caller's token as arguments, so the cache is per key:
two people with different roles never share an answer. Errors are raised, never cached.
"""

import csv
import io
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import streamlit as st
from prometheus_client.parser import text_string_to_metric_families

from dashboard.client import JSON, ConcordClient

LIVE = "1m"
HISTORY = "15m"
# Heartbeats expire after eleven seconds: the operations view must not show them a minute late.
PULSE = "5s"


@st.cache_resource
def _http() -> httpx.Client:
    # One pooled client for every session; the bearer is sent per request, not stored on it.
    return httpx.Client(timeout=15.0)


def client(api_url: str, token: str) -> ConcordClient:
    return ConcordClient(base_url=api_url.rstrip("/"), token=token, http=_http())


@st.cache_data(ttl=HISTORY, show_spinner=False)
def api_paths(api_url: str) -> dict[str, list[str]]:
    """The API's routes from its OpenAPI document: which endpoints this deployment has."""
    return client(api_url, "").openapi_paths()


def has_route(api_url: str, path: str, method: str = "GET") -> bool:
    try:
        return method in api_paths(api_url).get(path, [])
    except Exception:
        # No OpenAPI document: assume it is there and let the call's 404 decide.
        return True


# The SLA overview's windows, each with the bucket its charts use: 60 to 100 points a chart.
SLA_WINDOWS = {"1h": "1m", "6h": "5m", "24h": "15m", "7d": "2h", "31d": "12h"}
SLA_DEFAULT_WINDOW = "24h"


def load_sla(
    api_url: str, token: str, window: str, *, fresh: bool = False
) -> tuple[Future[JSON], Future[JSON]]:
    """The SLA overview's summary and time series for `window`, both asked for at once: over a
    large window each takes about a second in the API, so the page waits for the slower one
    rather than for their sum, and draws the tiles as soon as the summary is in.

    Sign-in calls it too, for a role that opens on that page, and drops the answers: the
    readings then run while Streamlit switches pages, and the page's own calls join them in
    progress (the API lets concurrent askers of one key wait for one reading), so nothing is
    read twice. An error stays in its future, for the page's calls to show."""
    # The loaders are thread-safe and draw nothing, so the threads need no script context.
    # Not a `with` block: leaving one would wait for both calls.
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sla")
    try:
        return (
            pool.submit(sla_summary, api_url, token, window, fresh=fresh),
            pool.submit(sla_timeseries, api_url, token, window, SLA_WINDOWS[window], fresh=fresh),
        )
    finally:
        pool.shutdown(wait=False)


# Not cached here: the API shares one SLA reading among all callers and keeps it warm
# (CONCORD_SLA_MAX_AGE_S, CONCORD_SLA_KEEP_WARM_S), so a run costs it a lookup, and a cache
# per key here only made the figures up to a minute older than the API's.
def sla_summary(
    api_url: str, token: str, window: str, group_by: str = "workflow", fresh: bool = False
) -> JSON:
    return client(api_url, token).sla_summary(window, group_by, fresh=fresh)


def sla_timeseries(api_url: str, token: str, window: str, bucket: str, fresh: bool = False) -> JSON:
    return client(api_url, token).sla_timeseries(window, bucket, fresh=fresh)


@st.cache_data(ttl=LIVE, show_spinner=False)
def exceptions(api_url: str, token: str, filters: tuple[tuple[str, Any], ...]) -> JSON:
    return client(api_url, token).exceptions(**dict(filters))


@st.cache_data(ttl=LIVE, show_spinner=False)
def transactions(api_url: str, token: str, filters: tuple[tuple[str, Any], ...]) -> JSON:
    return client(api_url, token).transactions(**dict(filters))


@st.cache_data(ttl=LIVE, show_spinner=False)
def transaction(api_url: str, token: str, correlation_id: str) -> JSON:
    return client(api_url, token).transaction(correlation_id)


@st.cache_data(ttl=LIVE, show_spinner=False)
def lineage(api_url: str, token: str, correlation_id: str) -> JSON:
    return client(api_url, token).lineage(correlation_id)


@st.cache_data(ttl=LIVE, show_spinner=False)
def search(api_url: str, token: str, q: str) -> JSON:
    return client(api_url, token).search(q)


@st.cache_data(ttl=HISTORY, show_spinner=False)
def audit(api_url: str, token: str, filters: tuple[tuple[str, Any], ...]) -> JSON:
    return client(api_url, token).audit(**dict(filters))


@st.cache_data(ttl=LIVE, show_spinner=False)
def bulk_replays(api_url: str, token: str) -> list[JSON]:
    return client(api_url, token).bulk_replays()


@st.cache_data(ttl=LIVE, show_spinner=False)
def reconciliation_runs(api_url: str, token: str) -> list[JSON]:
    # Enough to find the latest run of each recent month: the schedule runs several a time.
    return items_of(client(api_url, token).reconciliation_runs(limit=200))


def latest_per_period(runs: list[JSON]) -> list[JSON]:
    """The newest run of each period (runs come newest first), latest period first."""
    latest: dict[str, JSON] = {}
    for run in runs:
        latest.setdefault(str(run.get("period")), run)
    return [latest[p] for p in sorted(latest, reverse=True)]


@st.cache_data(ttl=HISTORY, show_spinner=False)
def mismatches(api_url: str, token: str, filters: tuple[tuple[str, Any], ...]) -> list[JSON]:
    return items_of(client(api_url, token).mismatches(**dict(filters)))


@st.cache_data(ttl=PULSE, show_spinner=False)
def operations(api_url: str, token: str) -> JSON:
    return client(api_url, token).operations()


@st.cache_data(ttl=LIVE, show_spinner=False)
def metrics(api_url: str) -> list[JSON]:
    return parse_metrics(client(api_url, "").metrics_text())


def items_of(body: Any) -> list[JSON]:
    """A page's items, whether the API answers a bare list or `{"items": [...]}`."""
    if isinstance(body, list):
        return [r for r in body if isinstance(r, dict)]
    if isinstance(body, dict):
        for key in ("items", "runs", "mismatches", "results"):
            if isinstance(body.get(key), list):
                return [r for r in body[key] if isinstance(r, dict)]
    return []


def parse_metrics(text: str) -> list[JSON]:
    """Prometheus text as rows: {"name", "value", **labels}."""
    rows: list[JSON] = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            rows.append({"name": sample.name, "value": float(sample.value), **sample.labels})
    return rows


def clear_live() -> None:
    """Forget live answers after an action, so the next read shows its effect."""
    for loader in (exceptions, transactions, transaction, lineage, search, bulk_replays,
                   reconciliation_runs, mismatches, audit, operations):  # fmt: skip
        loader.clear()


def filters_key(**filters: Any) -> tuple[tuple[str, Any], ...]:
    """Filters as a hashable, ordered cache key; empty values dropped."""
    return tuple(
        sorted(
            (k, tuple(v) if isinstance(v, list) else v)
            for k, v in filters.items()
            if v not in (None, "", [], ())
        )
    )


def csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    """Every field of every mismatch, nested values flattened to text, for a spreadsheet."""
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    for r in rows:
        writer.writerow(
            {
                k: v if isinstance(v, str | int | float) or v is None else str(v)
                for k, v in r.items()
            }
        )
    return out.getvalue().encode()
