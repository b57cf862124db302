"""Operations: the queue, worker health, work in flight, failures by cause, target pressure.

Figures come from the API only: GET /v1/operations (the arq queue's depth, the workers'
heartbeats, the sweeper's last run, transactions retrying per target), its Prometheus
/metrics and its SLA endpoints.
"""

from typing import Any

import streamlit as st

from dashboard import charts, data
from dashboard.client import ApiError
from dashboard.format import ago, duration, target_label, when
from dashboard.ui import Ctx, ctx, empty, header, refresh_button, show_error

ACTIVE = ("received", "pending", "running", "retrying")
PRESSURE = ("connection", "timeout", "rate_limit")


def _operations(c: Ctx) -> dict[str, Any] | None:
    try:
        return data.operations(c.api_url, c.token)
    except ApiError as exc:
        if exc.unavailable:
            empty("Queue and worker health are not available from this API yet",
                  "This view reads <code>/v1/operations</code>; it fills in once the API serves it.")  # fmt: skip
        else:
            show_error(exc, doing="read the queue and worker health")
        return None


def _heartbeat(ops: dict[str, Any]) -> dict[str, Any] | None:
    reported = ops["workers"]["reported"]
    return max(reported, key=lambda w: w.get("last_heartbeat_at") or "") if reported else None


def _queue_tiles(ops: dict[str, Any]) -> None:
    queue, sweeper, beat = ops["queue"], ops["sweeper"], _heartbeat(ops)
    cols = st.columns(5)
    cols[0].metric("Queue depth", f"{queue['total']:,}",
                   help=f"Wake-up jobs in the arq queue {queue['name']}, ready and deferred")  # fmt: skip
    cols[1].metric("Ready now", f"{queue['ready']:,}",
                   help="Due now or earlier (including jobs a worker has started)")  # fmt: skip
    next_due = queue.get("next_deferred_at")
    cols[2].metric("Deferred", f"{queue['deferred']:,}",
                   help=f"Retries and scheduled work; next due {when(next_due)}" if next_due else
                   "Retries and scheduled work waiting for their time")  # fmt: skip
    cols[3].metric("Last worker heartbeat",
                   ago(beat["last_heartbeat_at"]) if beat and beat.get("last_heartbeat_at") else "No worker reported",
                   help=f"Workers rewrite arq's health check every {ops['workers']['health_check_interval_s']} s; "
                        "it expires one second after that")  # fmt: skip
    cols[4].metric("Sweeper last run", ago(sweeper["at"]) if sweeper else "Never",
                   help=f"Found {sweeper['found']} stale, re-queued {sweeper['queued']}" if sweeper
                   else ops.get("sweeper_note") or "No sweep recorded")  # fmt: skip


def _expires(ttl_ms: int | None) -> str:
    return "—" if ttl_ms is None else duration(ttl_ms / 1000)


def _workers(ops: dict[str, Any]) -> None:
    st.subheader("Workers and sweeper")
    left, right = st.columns([2.2, 1])
    with left:
        reported = ops["workers"]["reported"]
        if not reported:
            empty("No worker reported",
                  f"No worker has written its health check in the last "
                  f"{ops['workers']['health_check_interval_s'] + 1} s. Start one with "
                  "<code>concord worker</code>; a worker that stopped cleanly removes its entry.")  # fmt: skip
        else:
            st.dataframe(
                [
                    {
                        "Health key": w["key"],
                        "Last heartbeat": ago(w.get("last_heartbeat_at")),
                        "Expires in": _expires(w.get("ttl_ms")),
                        "Completed": w["counters"].get("j_complete", 0),
                        "Failed": w["counters"].get("j_failed", 0),
                        "Retried": w["counters"].get("j_retried", 0),
                        "Running": w["counters"].get("j_ongoing", 0),
                        "Queued": w["counters"].get("queued", 0),
                    }
                    for w in reported
                ],  # fmt: skip
                hide_index=True,
                key="ops_workers_table",
            )
            st.caption(
                "arq keeps one health line per queue: with several workers, the latest writer's."
            )
    with right:
        sweeper = ops["sweeper"]
        if sweeper is None:
            empty("No sweep recorded yet",
                  "The sweeper runs at worker start and on a schedule, re-queuing transactions "
                  "left behind; its last run shows here.")  # fmt: skip
        else:
            a, b = st.columns(2)
            a.metric("Stale found", f"{sweeper['found']:,}", help="On the sweeper's last run")
            b.metric("Re-queued", f"{sweeper['queued']:,}", help="Wake-ups it queued")
            st.caption(f"Last sweep {when(sweeper['at'])} ({ago(sweeper['at'])}).")


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


def _retrying_from(ops: dict[str, Any] | None, target: str) -> int | None:
    if ops is None:
        return None
    return sum(int(r["transactions"]) for r in ops["by_target"]
               if r["target_system"] == target and r["state"] == "retrying")  # fmt: skip


def _targets(c: Ctx, ops: dict[str, Any] | None) -> None:
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
        retrying = 0 if g["group"] == "none" else _retrying_from(ops, str(g["group"]))
        if retrying is None:
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
                "Target": target_label(r["group"]),
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
    header("Operations", "The queue, worker health, work in flight, failures by cause, and "
           "pressure on each target system.")  # fmt: skip
    refresh_button("ops_refresh")

    @st.fragment(run_every="10s")
    def live() -> None:
        ops = _operations(c)
        if ops is not None:
            _queue_tiles(ops)
        rows = _metric_rows(c)
        if rows is not None:
            _flight(rows)
        _bulk(c)
        _targets(c, ops)
        if ops is not None:
            _workers(ops)

    live()


render()
