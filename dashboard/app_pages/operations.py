"""Operations: work in flight, failures by cause, and pressure on each target system.

Figures come from the API's Prometheus /metrics and its SLA endpoints. Worker heartbeats,
arq queue depth and the sweeper's last run are on each worker's own metrics port, which the
dashboard does not read: it talks to the API only.
"""

from typing import Any

import streamlit as st

from dashboard import charts, data
from dashboard.client import ApiError
from dashboard.format import duration, humanize
from dashboard.ui import Ctx, ctx, empty, header, refresh_button, show_error

ACTIVE = ("received", "pending", "running", "retrying")
PRESSURE = ("connection", "timeout", "rate_limit")


def _metric_rows(c: Ctx) -> list[dict[str, Any]] | None:
    try:
        return data.metrics(c.api_url)
    except ApiError as exc:
        show_error(exc, doing="read /metrics")
        return None


def _flight(rows: list[dict[str, Any]]) -> None:
    txs = [r for r in rows if r["name"] == "concord_transactions"]
    exc = [r for r in rows if r["name"] == "concord_open_exceptions"]
    by_state: dict[str, float] = {}
    for r in txs:
        by_state[r["state"]] = by_state.get(r["state"], 0) + r["value"]
    cols = st.columns(5)
    cols[0].metric("In flight", f"{sum(by_state.get(s, 0) for s in ACTIVE):,.0f}",
                   help="received + pending + running + retrying")  # fmt: skip
    cols[1].metric("Retrying", f"{by_state.get('retrying', 0):,.0f}")
    cols[2].metric("Waiting (pending)", f"{by_state.get('pending', 0):,.0f}")
    cols[3].metric("Open exceptions", f"{sum(r['value'] for r in exc):,.0f}")
    cols[4].metric("Posted (all time)", f"{by_state.get('posted', 0):,.0f}")
    left, right = st.columns(2)
    active = [{**r, "count": r["value"]} for r in txs if r["state"] in ACTIVE and r["value"]]
    if active:
        left.plotly_chart(charts.stacked_counts(active, x="workflow", color="state",
                                                title="Work in flight by workflow"), key="ops_flight_chart")  # fmt: skip
    else:
        with left:
            empty("Nothing in flight", "Every transaction received so far has settled.")
    pressure = [
        {"classification": r["classification"], "count": r["value"]} for r in exc if r["value"]
    ]
    if pressure:
        right.plotly_chart(charts.counts_bar(pressure, key="classification", title="Open exceptions by cause",
                                             highlight=PRESSURE), key="ops_exc_chart")  # fmt: skip
    else:
        with right:
            empty(
                "No open exceptions",
                "Connection, timeout and rate-limit failures show up here in red.",
            )


def _retrying(c: Ctx, target: str) -> int:
    page = data.transactions(
        c.api_url, c.token, data.filters_key(state=["retrying"], target=target, limit=500)
    )
    return len(page["items"])


def _targets(c: Ctx) -> None:
    try:
        groups = data.sla_summary(c.api_url, c.token, "1h", "target")["groups"]
    except ApiError as exc:
        if not exc.unavailable:
            show_error(exc, doing="load per-target figures")
        return
    groups = [g for g in groups if g["total"]]
    st.subheader("Target systems, last hour")
    if not groups:
        empty("No calls to target systems in the last hour",
              "Per-target throughput, latency and retry pressure appear once workers post to the ERP, CRM or others.")  # fmt: skip
        return
    rows = []
    for g in groups:
        try:
            retrying = _retrying(c, str(g["group"]))
        except ApiError:
            retrying = 0
        rows.append({**g, "retrying": retrying})
    left, right = st.columns(2)
    left.plotly_chart(charts.per_target(rows, field="throughput_per_hour", title="Throughput per target",
                                        unit="transactions / h"), key="ops_tp_chart")  # fmt: skip
    right.plotly_chart(charts.per_target(rows, field="retrying", title="Retry pressure per target",
                                         unit="transactions retrying"), key="ops_retry_chart")  # fmt: skip
    st.dataframe(
        [
            {
                "Target": humanize(str(r["group"])),
                "Received": r["total"],
                "Posted": r["posted"],
                "Retrying now": r["retrying"],
                "Overdue": r["overdue"],
                "Open exceptions": r["open_exceptions"],
                "p95": duration(r.get("p95_s")),
                "Per hour": f"{r['throughput_per_hour']:,.1f}",
            }
            for r in rows
        ],  # fmt: skip
        hide_index=True,
        key="ops_target_table",
    )


def _bulk(c: Ctx) -> None:
    try:
        jobs = [
            j for j in data.bulk_replays(c.api_url, c.token) if j["state"] in {"pending", "running"}
        ]
    except ApiError:
        return
    for j in jobs:
        st.progress(min(1.0, j["done"] / max(1, j["expected_count"])),
                    text=f"Bulk replay #{j['id']} ({j['name']}): {j['done']} of {j['expected_count']}")  # fmt: skip


def render() -> None:
    c = ctx()
    header("Operations", "Work in flight, failures by cause, and pressure on each target system.")
    refresh_button("ops_refresh")

    @st.fragment(run_every="15s")
    def live() -> None:
        rows = _metric_rows(c)
        if rows is not None:
            _flight(rows)
        _bulk(c)
        _targets(c)

    live()
    with st.expander("Workers and sweeper"):
        empty("Worker health is not available from the API yet",
              "Worker heartbeats, the arq queue depth and the sweeper's last run are exported on each "
              "worker's own metrics port (<code>concord worker --port</code>); the dashboard reads the "
              "API only, so they appear here once the API reports them.")  # fmt: skip


render()
