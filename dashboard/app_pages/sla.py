"""SLA overview, for executives: are we meeting integration SLAs, and how much money is at risk?"""

from concurrent.futures import Future
from typing import Any

import streamlit as st

from dashboard import charts, data
from dashboard.client import JSON, ApiError
from dashboard.format import add_money, duration, humanize, money_map, percent, when
from dashboard.ui import ctx, empty, header, refresh_button, show_error, unavailable

WINDOW_LABELS = {
    "1h": "Last hour",
    "6h": "6 hours",
    "24h": "24 hours",
    "7d": "7 days",
    "31d": "31 days",
}
ACTIVE = ["received", "pending", "running", "retrying"]


def _totals(groups: list[dict[str, Any]]) -> dict[str, Any]:
    met = sum(g["met"] for g in groups)
    breached = sum(g["breached"] for g in groups)
    at_risk: dict[str, int] = {}
    for g in groups:
        at_risk = add_money(at_risk, g.get("money_at_risk"))
    p95s = [g["p95_s"] for g in groups if g.get("p95_s") is not None]
    return {
        "total": sum(g["total"] for g in groups),
        "attainment": None if met + breached == 0 else 100 * met / (met + breached),
        "breached": breached,
        "overdue": sum(g["overdue"] for g in groups),
        "open_exceptions": sum(g["open_exceptions"] for g in groups),
        "throughput": sum(g["throughput_per_hour"] for g in groups),
        "p95": max(p95s) if p95s else None,
        "at_risk": at_risk,
    }


def _tiles(loading: Future[JSON], window: str) -> list[dict[str, Any]]:
    """The headline tiles, their links and the per-workflow table; the groups drawn, if any."""
    try:
        summary = loading.result()
    except ApiError as exc:
        if exc.unavailable:
            unavailable("The SLA summary", "GET /v1/sla/summary")
        else:
            show_error(exc, doing="load the SLA summary")
        return []
    groups: list[dict[str, Any]] = summary["groups"]
    t = _totals(groups)
    if t["total"] == 0:
        empty(
            f"No transactions received in the last {window}",
            "Attainment, latency, breaches and money at risk appear here once billing sends "
            "events to Concord (try <code>concord demo</code> or the sandbox traffic generator), "
            "or pick a longer window.",
        )
        return []
    cols = st.columns([1, 1, 1, 1, 1, 1.7])
    cols[0].metric("SLA attainment", percent(t["attainment"]),
                   help="met / (met + breached) over transactions received in the window; one not done yet "
                        "(an open exception too) counts once its target has passed")  # fmt: skip
    cols[1].metric(
        "p95 latency", duration(t["p95"]), help="Slowest workflow's p95, posted end to end"
    )
    cols[2].metric("Breaches", f"{t['breached']:,}", help="Done late, or not done past the target")
    cols[3].metric("Overdue now", f"{t['overdue']:,}", help="Still active past the SLA target")
    cols[4].metric("Open exceptions", f"{t['open_exceptions']:,}")
    cols[5].metric(
        "Money at risk", money_map(t["at_risk"]), help="Amounts not done past the target"
    )
    links = st.columns([1, 1, 1, 1, 1, 1.7])
    links[2].page_link("app_pages/exceptions.py", label="Failed work →")
    links[3].page_link("app_pages/transactions.py", label="Overdue now →",
                       query_params={"state": ",".join(ACTIVE)})  # fmt: skip
    links[4].page_link("app_pages/exceptions.py", label="Exception queue →")
    links[5].page_link("app_pages/transactions.py", label="Transactions at risk →",
                       query_params={"state": "exception"})  # fmt: skip
    # The whole width: nine columns did not fit half of it at 1440 px.
    st.dataframe(
        [
            {
                "Workflow": humanize(g["group"]),
                "SLA target": duration(g.get("sla_target_s")),
                "Received": g["total"],
                "Attainment": percent(g.get("attainment_pct")),
                "p50": duration(g.get("p50_s")),
                "p95": duration(g.get("p95_s")),
                "Breached": g["breached"],
                "Overdue": g["overdue"],
                "Money at risk": money_map(g.get("money_at_risk")),
            }
            for g in groups
        ],
        hide_index=True,
        key="sla_groups_table",
    )
    # The API shares a reading among its callers for a few seconds: say which moment it is.
    st.caption(
        f"{t['total']:,} transactions · {t['throughput']:,.1f} posted per hour, averaged over "
        "the whole window · "
        f"figures as of {when(summary.get('until'))}"
    )
    return groups


def _trends(loading: Future[JSON], latency: Any, throughput: Any) -> None:
    try:
        series = loading.result()
    except ApiError as exc:
        if not exc.unavailable:
            show_error(exc, doing="load the SLA time series")
        return
    buckets = series["buckets"]
    if not any(b["figures"]["total"] for b in buckets):
        return
    targets = {b["figures"].get("sla_target_s") for b in buckets} - {None}
    latency.plotly_chart(
        charts.latency_trend(buckets, target_s=min(targets) if len(targets) == 1 else None),
        key="sla_latency_chart",
    )
    throughput.plotly_chart(charts.throughput(buckets), key="sla_throughput_chart")


def render() -> None:
    c = ctx()
    header("SLA overview", "Are integrations meeting their SLAs, and how much money is at risk?")
    top = st.columns([3, 1])
    window = top[0].segmented_control(
        "Window", list(data.SLA_WINDOWS), default=data.SLA_DEFAULT_WINDOW, key="sla_window",
        format_func=lambda w: WINDOW_LABELS[w],
    ) or data.SLA_DEFAULT_WINDOW  # fmt: skip
    with top[1]:
        refresh_button("sla_refresh", fresh_flag="sla_fresh")

    # Live: re-run every 30 s, each run taking the API's shared reading (at most 15 s old).
    @st.fragment(run_every="30s")
    def live() -> None:
        # "Refresh now" asks for figures read after the click, once; the timer takes shared ones.
        summary, series = data.load_sla(
            c.api_url, c.token, window, fresh=st.session_state.pop("sla_fresh", False)
        )
        groups = _tiles(summary, window)
        # Two charts to a row at most: in thirds of 1440 px, legends and time axes collided.
        attainment, throughput = st.columns(2)
        if groups:
            attainment.plotly_chart(charts.attainment_by_group(groups), key="sla_attainment_chart")
        _trends(series, st.container(), throughput)

    live()


render()
