"""Plotly figures built from plain rows (dicts as the API returns them); no Streamlit here.

Each function takes rows and returns a `go.Figure`, so tests can check the traces directly.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import plotly.graph_objects as go  # type: ignore[import-untyped]

from dashboard.format import duration, humanize, money, parse_time, state_color, target_label

Row = dict[str, Any]
FONT = "Inter, 'Source Sans Pro', system-ui, sans-serif"
SYSTEM_ORDER = [
    "analytics",
    "billing",
    "concord",
    "crm",
    "erp",
    "provisioning",
    "support",
    "payments",
]
OUTCOME_COLORS = {
    "succeeded": "#2e9d5b",
    "conflict_found": "#5b8def",
    "found": "#5b8def",
    "failed_retryable": "#f59e0b",
    "retryable": "#f59e0b",
    "failed_terminal": "#d64545",
    "terminal": "#d64545",
    "failed": "#d64545",
    None: "#9aa5b1",
}
# No template of our own: Streamlit installs its own as Plotly's default, which follows the
# dashboard's theme and which Plotly applies without validating it again. Naming one per figure
# (update_layout(template="plotly_white")) validated the whole template each time: 20 ms of a
# chart's 33 ms, half a second of the server's time per SLA page on a 2-core machine.
PALETTE = ["#3b82f6", "#f59e0b", "#2e9d5b", "#d64545", "#8b5cf6", "#14b8a6", "#ec4899", "#64748b"]


def blank() -> go.Figure:
    """A figure with nothing in it (the sign-in page draws one out of sight: ui.preload_charts)."""
    return go.Figure(layout={"height": 10, "margin": {"l": 0, "r": 0, "t": 0, "b": 0}})


def _figure(
    traces: Sequence[Any], *, title: str | None = None, height: int = 320, **layout: Any
) -> go.Figure:
    """The figure with its whole layout given at once: Plotly validates a layout passed to the
    constructor in a few milliseconds, and the same through update_layout, update_xaxes and
    add_hline in ten times that (docs/performance.md)."""
    # The legend sits just above the plot, right-aligned; in a narrow column it reaches the
    # title, so a chart with both puts the title at the very top and leaves the legend a row.
    legend = sum(trace.showlegend is not False for trace in traces) > 1
    legend_row = 26 if title and legend else 0
    base: dict[str, Any] = {
        "title": {
            "text": title,
            "x": 0,
            "y": 1,
            "yref": "container",
            "yanchor": "top",
            "pad": {"t": 10},
            "font": {"size": 15},
        }
        if title
        else None,  # fmt: skip
        "height": height + legend_row,
        "margin": {"l": 10, "r": 10, "t": (40 if title else 10) + legend_row, "b": 10},
        "font": {"family": FONT, "size": 12},
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1},
        "hoverlabel": {"font": {"family": FONT}},
    }
    return go.Figure(data=list(traces), layout={**base, **layout})


def _dotted(color: str, *, x: Any = None, y: Any = None) -> dict[str, Any]:
    """A dotted line across the plot at x (vertical) or y (horizontal), as add_vline and
    add_hline draw it."""
    if x is not None:
        return {"type": "line", "xref": "x", "x0": x, "x1": x, "yref": "y domain", "y0": 0,
                "y1": 1, "line": {"dash": "dot", "color": color}}  # fmt: skip
    return {"type": "line", "xref": "x domain", "x0": 0, "x1": 1, "yref": "y", "y0": y, "y1": y,
            "line": {"dash": "dot", "color": color}}  # fmt: skip


def attainment_by_group(groups: Sequence[Row], *, objective_pct: float = 99.0) -> go.Figure:
    """Attainment % per workflow (or target), colored against the objective, target in hover."""
    rows = [g for g in groups if g.get("attainment_pct") is not None]
    names = [humanize(str(g["group"])) for g in rows]
    values = [float(g["attainment_pct"]) for g in rows]
    colors = [
        "#2e9d5b" if v >= objective_pct else "#f59e0b" if v >= 90 else "#d64545" for v in values
    ]
    bar = go.Bar(
        x=values,
        y=names,
        orientation="h",
        marker_color=colors,
        text=[f"{v:.1f} %" for v in values],
        textposition="auto",
        customdata=[
            [duration(g.get("sla_target_s")), g.get("met", 0), g.get("breached", 0)] for g in rows
        ],
        hovertemplate="%{y}: %{x:.1f} %<br>target %{customdata[0]}"
        "<br>met %{customdata[1]} · breached %{customdata[2]}<extra></extra>",
        name="attainment",
    )
    return _figure(
        [bar],
        title="SLA attainment by workflow",
        height=max(200, 60 + 40 * len(rows)),
        # The objective is named under the axis: as an annotation by its line it sat on the bars.
        shapes=[_dotted("#64748b", x=objective_pct)],
        xaxis={"range": [0, 100], "ticksuffix": " %",
               "title": {"text": f"dotted line: objective {objective_pct:g} %",
                         "font": {"size": 11, "color": "#64748b"}}},
        yaxis={"autorange": "reversed"},
    )  # fmt: skip


def latency_trend(buckets: Sequence[Row], *, target_s: float | None = None) -> go.Figure:
    """p50 and p95 end-to-end latency per time bucket, with the SLA target as a line."""
    xs = [parse_time(b["start"]) for b in buckets]
    lines = [
        go.Scatter(
            x=xs,
            y=[b["figures"].get(key) for b in buckets],
            mode="lines+markers",
            name=name,
            line={"color": color, "width": 2},
            connectgaps=False,
            hovertemplate=f"{name} %{{y:.2f}} s<extra></extra>",
        )
        for key, name, color in (("p50_s", "p50", "#93c5fd"), ("p95_s", "p95", "#1d4ed8"))
    ]
    target: dict[str, Any] = {}
    if target_s is not None:
        # Where add_hline puts its annotation: above the line, at the right.
        label = {"text": f"SLA target {duration(target_s)}", "showarrow": False, "xref": "x domain",
                 "x": 1, "xanchor": "right", "yref": "y", "y": target_s, "yanchor": "bottom"}  # fmt: skip
        target = {"shapes": [_dotted("#d64545", y=target_s)], "annotations": [label]}
    return _figure(
        lines,
        title="End-to-end latency (posted)",
        yaxis={"title": {"text": "seconds"}, "rangemode": "tozero"},
        **target,
    )


def throughput(buckets: Sequence[Row]) -> go.Figure:
    """Transactions received per bucket, split into met, breached and the rest."""
    xs = [parse_time(b["start"]) for b in buckets]
    split = (("met", "Met SLA", "#2e9d5b"), ("breached", "Breached", "#d64545"))
    bars = [
        go.Bar(x=xs, y=[b["figures"].get(key, 0) for b in buckets], name=name, marker_color=color)
        for key, name, color in split
    ]
    other = [
        max(
            0,
            b["figures"].get("total", 0)
            - b["figures"].get("met", 0)
            - b["figures"].get("breached", 0),
        )
        for b in buckets
    ]
    bars.append(go.Bar(x=xs, y=other, name="In flight", marker_color="#9aa5b1"))
    return _figure(
        bars,
        title="Throughput",
        barmode="stack",
        bargap=0.15,
        yaxis={"title": {"text": "transactions"}},
    )


def _attempt_rows(runs: Sequence[Row]) -> list[Row]:
    rows: list[Row] = []
    for run in runs:
        for step in run.get("steps", []):
            lane = f"{step['target_system']} · {step['name']}"
            for attempt in step.get("attempts", []):
                start = parse_time(attempt.get("started_at"))
                end = parse_time(attempt.get("ended_at")) or start
                if start is None or end is None:
                    continue
                rows.append({"lane": lane, "run": run["number"], "start": start, "end": end,
                             "outcome": attempt.get("outcome"), "attempt": attempt["number"],
                             "error": attempt.get("error_message") or "", "http": attempt.get("http_status")})  # fmt: skip
    return rows


def step_timeline(runs: Sequence[Row]) -> go.Figure:
    """A Gantt of every attempt, one lane per target system and step; waits are the gaps."""
    rows = _attempt_rows(runs)
    bars = []
    by_outcome: dict[Any, list[Row]] = defaultdict(list)
    for r in rows:
        by_outcome[r["outcome"]].append(r)
    for outcome, items in by_outcome.items():
        bars.append(
            go.Bar(
                base=[r["start"] for r in items],
                # A bar of at least 40 ms, so instant calls stay visible.
                x=[max(40.0, (r["end"] - r["start"]).total_seconds() * 1000) for r in items],
                y=[r["lane"] for r in items],
                orientation="h",
                name=humanize(outcome or "in progress"),
                marker_color=OUTCOME_COLORS.get(outcome, "#9aa5b1"),
                text=[f"run {r['run']} · #{r['attempt']}" for r in items],
                textposition="inside",
                customdata=[
                    [
                        r["run"],
                        r["attempt"],
                        r["http"] or "—",
                        r["error"],
                        duration((r["end"] - r["start"]).total_seconds()),
                    ]
                    for r in items
                ],  # fmt: skip
                hovertemplate="run %{customdata[0]} attempt %{customdata[1]}<br>"
                "HTTP %{customdata[2]} · %{customdata[4]}<br>%{customdata[3]}<extra></extra>",
            )
        )
    waits = [
        {"type": "line", "x0": a["end"], "x1": b["start"], "y0": a["lane"], "y1": b["lane"],
         "line": {"color": "#94a3b8", "dash": "dot", "width": 1}}
        for a, b in _waits(rows)
    ]  # fmt: skip
    lanes = len({r["lane"] for r in rows})
    return _figure(
        bars,
        title="Steps and attempts per target system",
        height=140 + 50 * max(1, lanes),
        shapes=waits,
        xaxis={"type": "date", "title": {"text": None}},
        yaxis={"autorange": "reversed", "title": {"text": None}},
        barmode="overlay",
    )


def _waits(rows: list[Row]) -> list[tuple[Row, Row]]:
    """Consecutive attempts of one lane: the dotted gap between them is the retry wait."""
    out: list[tuple[Row, Row]] = []
    by_lane: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by_lane[r["lane"]].append(r)
    for items in by_lane.values():
        items.sort(key=lambda r: r["start"])
        out.extend((a, b) for a, b in zip(items, items[1:], strict=False) if b["start"] > a["end"])
    return out


def lineage_graph(nodes: Sequence[Row], edges: Sequence[Row]) -> go.Figure:
    """The lineage graph drawn across systems: one lane per system, time from left to right."""
    systems = sorted({n["system"] for n in nodes},
                     key=lambda s: (SYSTEM_ORDER.index(s) if s in SYSTEM_ORDER else 99, s))  # fmt: skip
    times = [parse_time(n.get("at")) for n in nodes]
    known = [t for t in times if t is not None]
    fallback = min(known) if known else datetime(1970, 1, 1)
    pos: dict[str, tuple[datetime, str]] = {}
    for i, (node, at) in enumerate(zip(nodes, times, strict=True)):
        # Nodes without a time keep their order, a millisecond apart, so none overlap exactly.
        pos[node["id"]] = (at or fallback + timedelta(milliseconds=i), node["system"])
    ex, ey = [], []
    for e in edges:
        if e["source"] in pos and e["target"] in pos:
            (x0, y0), (x1, y1) = pos[e["source"]], pos[e["target"]]
            ex += [x0, x1, None]
            ey += [y0, y1, None]
    traces = [go.Scatter(x=ex, y=ey, mode="lines", line={"color": "#cbd5e1", "width": 1.5},
                         hoverinfo="skip", showlegend=False)]  # fmt: skip
    for kind, symbol in (("event", "diamond"), ("transaction", "star"), ("run", "square"),
                         ("step", "circle"), ("record", "hexagon")):  # fmt: skip
        items = [n for n in nodes if n["kind"] == kind]
        if not items:
            continue
        traces.append(
            go.Scatter(
                x=[pos[n["id"]][0] for n in items],
                y=[n["system"] for n in items],
                mode="markers+text",
                name=humanize(kind),
                marker={
                    "symbol": symbol,
                    "size": 16,
                    "line": {"width": 1, "color": "white"},
                    "color": [
                        state_color(n.get("state")) if n.get("state") else "#475569" for n in items
                    ],
                },  # fmt: skip
                text=[str(n["label"])[:28] for n in items],
                textposition="top center",
                customdata=[[humanize(kind), n.get("state") or "—", n["label"]] for n in items],
                hovertemplate="%{customdata[0]}: %{customdata[2]}<br>state %{customdata[1]}"
                "<br>%{x}<extra></extra>",
            )
        )
    return _figure(
        traces,
        title="Lineage across systems",
        height=120 + 70 * max(1, len(systems)),
        yaxis={"categoryorder": "array", "categoryarray": systems, "title": {"text": None}},
        xaxis={"type": "date"},
    )


def counts_bar(
    rows: Iterable[Row], *, key: str, title: str, highlight: Iterable[str] = ()
) -> go.Figure:
    """How many rows per value of `key`, largest first; `highlight` values drawn in red."""
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        counts[str(r.get(key) or "unknown")] += int(r.get("count", 1))
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    hot = set(highlight)
    bar = go.Bar(
        x=[humanize(k) for k, _ in ordered],
        y=[v for _, v in ordered],
        marker_color=["#d64545" if k in hot else "#3b82f6" for k, _ in ordered],
        text=[v for _, v in ordered],
        textposition="outside",
        hovertemplate="%{x}: %{y}<extra></extra>",
    )
    return _figure([bar], title=title, height=300, yaxis={"rangemode": "tozero"}, bargap=0.45)


def stacked_counts(
    rows: Sequence[Row], *, x: str, color: str, title: str, value: str = "count"
) -> go.Figure:
    """A stacked bar of `value` by `x`, one colour per `color` (e.g. states per workflow)."""
    xs = sorted({str(r[x]) for r in rows})
    series: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in rows:
        series[str(r[color])][str(r[x])] += float(r.get(value, 0))
    bars = [
        go.Bar(x=[humanize(v) for v in xs], y=[series[name][v] for v in xs], name=humanize(name),
               marker_color=state_color(name) if name in _STATES else None)
        for name in sorted(series)
    ]  # fmt: skip
    return _figure(bars, title=title, barmode="stack", colorway=PALETTE, bargap=0.45)


_STATES = {"posted", "received", "pending", "running", "retrying", "exception", "manually_resolved",
           "reversed", "ignored"}  # fmt: skip


def amount_of(row: Row) -> tuple[int, str]:
    """A mismatch's amount at risk and currency, whatever the field is called in this API version."""
    for key in ("amount_at_risk_minor", "amount_minor", "difference_minor", "amount"):
        if row.get(key) is not None:
            return int(row[key]), str(row.get("currency") or "")
    return 0, str(row.get("currency") or "")


def mismatches_by_kind(rows: Sequence[Row]) -> go.Figure:
    """Amount at risk per mismatch kind and period, per currency (a facet per currency)."""
    series: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    kinds: set[str] = set()
    for r in rows:
        amount, currency = amount_of(r)
        kind = str(r.get("kind") or "unknown")
        kinds.add(kind)
        series[(str(r.get("period") or "—"), currency)][kind] += abs(amount)
    ordered = sorted(kinds)
    bars = [
        go.Bar(
            x=[humanize(k) for k in ordered],
            y=[by_kind.get(k, 0) / 100 for k in ordered],
            name=f"{period} ({currency or '—'})",
            marker_color=PALETTE[i % len(PALETTE)],
            customdata=[money(by_kind.get(k, 0), currency) for k in ordered],
            hovertemplate="%{x}: %{customdata}<extra>%{fullData.name}</extra>",
        )
        for i, ((period, currency), by_kind) in enumerate(sorted(series.items()))
    ]
    return _figure(
        bars,
        title="Amount at risk by mismatch kind and period",
        barmode="group",
        yaxis={"title": {"text": "amount at risk (major units)"}},
    )


def per_target(groups: Sequence[Row], *, field: str, title: str, unit: str) -> go.Figure:
    """One SLA figure per target system (from /v1/sla/summary?group_by=target)."""
    bar = go.Bar(
        x=[target_label(g["group"]) for g in groups],
        y=[g.get(field) or 0 for g in groups],
        marker_color=PALETTE[0],
        text=[f"{(g.get(field) or 0):,.1f}" for g in groups],
        textposition="outside",
        hovertemplate=f"%{{x}}: %{{y:,.2f}} {unit}<extra></extra>",
    )
    return _figure(
        [bar],
        title=title,
        height=280,
        yaxis={"title": {"text": unit}, "rangemode": "tozero"},
        bargap=0.45,
    )
