"""Figures from plain rows: no Streamlit runtime, no API."""

from typing import Any

from dashboard import charts
from dashboard.data import csv_bytes, filters_key, items_of, parse_metrics
from dashboard.format import duration, humanize, money, money_map

T0 = "2026-05-01T10:00:00+00:00"


def figures(**over: Any) -> dict[str, Any]:
    base = {"group": "invoice_generated", "sla_target_s": 300.0, "total": 10, "posted": 8, "met": 7,
            "breached": 1, "overdue": 1, "open_exceptions": 1, "attainment_pct": 87.5, "p50_s": 1.2,
            "p95_s": 4.5, "p99_s": 9.0, "throughput_per_hour": 10.0, "money_at_risk": {"USD": 1000}}  # fmt: skip
    return {**base, **over}


def attempt(number: int, start: str, end: str, outcome: str) -> dict[str, Any]:
    return {"number": number, "started_at": start, "ended_at": end, "outcome": outcome,
            "error_class": None, "error_message": "boom" if outcome != "succeeded" else None,
            "http_status": 503 if outcome != "succeeded" else 204, "target_ref": None}  # fmt: skip


def test_attainment_colours_each_group_against_the_objective() -> None:
    fig = charts.attainment_by_group(
        [
            figures(group="invoice_generated", attainment_pct=99.5),
            figures(group="invoice_paid", attainment_pct=80.0),
            figures(group="idle", attainment_pct=None),
        ]  # fmt: skip
    )

    [bar] = fig.data
    assert list(bar.y) == ["Invoice generated", "Invoice paid"]
    assert list(bar.x) == [99.5, 80.0]
    assert list(bar.marker.color) == ["#2e9d5b", "#d64545"]
    assert [(line.x0, line.x1) for line in fig.layout.shapes] == [(99.0, 99.0)]


def test_latency_trend_has_p50_p95_and_the_target_line() -> None:
    buckets = [
        {"start": T0, "figures": figures()},
        {"start": "2026-05-01T10:05:00+00:00", "figures": figures(p95_s=None)},
    ]

    fig = charts.latency_trend(buckets, target_s=300)

    assert [t.name for t in fig.data] == ["p50", "p95"]
    assert list(fig.data[1].y) == [4.5, None]
    assert fig.layout.shapes[0].y0 == 300
    assert fig.layout.annotations[0].text == "SLA target 5 min"
    assert fig.layout.annotations[0].y == 300


def test_throughput_splits_met_breached_and_in_flight() -> None:
    fig = charts.throughput([{"start": T0, "figures": figures(total=10, met=7, breached=1)}])

    assert {t.name: list(t.y) for t in fig.data} == {
        "Met SLA": [7],
        "Breached": [1],
        "In flight": [2],
    }
    assert fig.layout.barmode == "stack"


def test_step_timeline_draws_each_attempt_in_its_lane_and_the_wait_between() -> None:
    runs = [
        {"number": 1, "steps": [{"name": "erp.post_invoice", "target_system": "erp", "attempts": [
            attempt(1, T0, "2026-05-01T10:00:01+00:00", "failed_retryable"),
            attempt(2, "2026-05-01T10:00:05+00:00", "2026-05-01T10:00:06+00:00", "succeeded"),
        ]}]},
    ]  # fmt: skip

    fig = charts.step_timeline(runs)

    by_name = {t.name: t for t in fig.data}
    assert set(by_name) == {"Failed retryable", "Succeeded"}
    assert list(by_name["Succeeded"].y) == ["erp · erp.post_invoice"]
    assert list(by_name["Failed retryable"].x) == [1000.0]
    # One dotted wait from the end of attempt 1 to the start of attempt 2.
    [wait] = fig.layout.shapes
    assert wait.line.dash == "dot"


def test_lineage_graph_puts_each_node_in_its_system_lane() -> None:
    nodes: list[dict[str, Any]] = [
        {"id": "e", "kind": "event", "system": "billing", "label": "evt_1", "state": "accepted", "at": T0, "detail": {}},
        {"id": "t", "kind": "transaction", "system": "concord", "label": "cid", "state": "posted", "at": T0, "detail": {}},
        {"id": "r", "kind": "record", "system": "erp", "label": "INV-1", "state": None, "at": None, "detail": {}},
    ]  # fmt: skip
    edges: list[dict[str, Any]] = [
        {"source": "e", "target": "t", "kind": "started", "at": T0},
        {"source": "t", "target": "r", "kind": "created", "at": None},
    ]

    fig = charts.lineage_graph(nodes, edges)

    lines, *markers = fig.data
    assert len(lines.x) == 6  # two segments, each closed by None
    assert {t.name: list(t.y) for t in markers} == {
        "Event": ["billing"],
        "Transaction": ["concord"],
        "Record": ["erp"],
    }
    assert list(fig.layout.yaxis.categoryarray) == ["billing", "concord", "erp"]


def test_counts_bar_sorts_and_highlights_pressure() -> None:
    rows: list[dict[str, Any]] = [
        {"classification": "timeout"},
        {"classification": "validation", "count": 3},
    ]

    fig = charts.counts_bar(rows, key="classification", title="x", highlight=["timeout"])

    assert list(fig.data[0].x) == ["Validation", "Timeout"]
    assert list(fig.data[0].marker.color) == ["#3b82f6", "#d64545"]


def test_mismatches_by_kind_sums_amounts_per_period_and_currency() -> None:
    rows = [
        {
            "kind": "amount_mismatch",
            "period": "2026-04",
            "amount_at_risk_minor": 1500,
            "currency": "USD",
        },
        {
            "kind": "amount_mismatch",
            "period": "2026-04",
            "amount_at_risk_minor": -500,
            "currency": "USD",
        },
        {"kind": "missing_in_erp", "period": "2026-04", "amount_minor": 1000, "currency": "EUR"},
    ]

    fig = charts.mismatches_by_kind(rows)

    by_name = {t.name: list(t.y) for t in fig.data}
    assert by_name == {"2026-04 (EUR)": [0.0, 10.0], "2026-04 (USD)": [20.0, 0.0]}


def test_stacked_counts_and_per_target_take_plain_rows() -> None:
    fig = charts.stacked_counts(
        [{"workflow": "a", "state": "retrying", "count": 2}, {"workflow": "b", "state": "pending", "count": 1}],
        x="workflow", color="state", title="t",
    )  # fmt: skip
    assert sorted(t.name for t in fig.data) == ["Pending", "Retrying"]
    fig = charts.per_target(
        [figures(group="erp", throughput_per_hour=12.0), figures(group="none", throughput_per_hour=0.0)],
        field="throughput_per_hour",
        title="t",
        unit="/h",
    )  # fmt: skip
    assert list(fig.data[0].y) == [12.0, 0.0]
    # The API's "none" group (no step reached yet) is not shown as a system called "None".
    assert list(fig.data[0].x) == ["ERP", "No step yet"]


def test_money_and_durations_carry_their_units() -> None:
    assert money(123456, "USD") == "$1,234.56"
    assert money(-500, "EUR") == "-€5.00"
    assert money(1000, "JPY") == "¥1,000"
    assert money(1234, "KWD") == "1.234 KWD"
    assert money(None, "USD") == "—"
    assert money_map({"USD": 1000, "EUR": 0}) == "$10.00"
    assert [duration(s) for s in (0.25, 12.34, 245, 7500, 200000)] == [
        "250 ms",
        "12.3 s",
        "4 min 5 s",
        "2 h 5 min",
        "2 d 7 h",
    ]
    # Round targets read as written: no "0 s" or "0 min" tail.
    assert [duration(s) for s in (10, 300, 3600, 172800)] == ["10 s", "5 min", "1 h", "2 d"]


def test_metrics_text_parses_into_rows() -> None:
    text = (
        '# TYPE concord_transactions gauge\nconcord_transactions{workflow="w",state="posted"} 3.0\n'
    )

    assert parse_metrics(text) == [
        {"name": "concord_transactions", "value": 3.0, "workflow": "w", "state": "posted"}
    ]


def test_helpers_for_pages_and_export() -> None:
    assert items_of({"items": [{"a": 1}], "next_cursor": None}) == [{"a": 1}]
    assert items_of([{"a": 1}, 2]) == [{"a": 1}]
    assert filters_key(state=["a"], workflow="", limit=5) == (("limit", 5), ("state", ("a",)))
    assert csv_bytes([{"id": 1, "kind": "x"}, {"id": 2, "detail": {"a": 1}}]).decode().splitlines() == [
        "id,kind,detail", "1,x,", "2,,{'a': 1}",
    ]  # fmt: skip


def test_names_read_as_words_with_system_acronyms_in_capitals() -> None:
    assert humanize("retry_budget_exhausted") == "Retry budget exhausted"
    assert humanize("erp") == "ERP"
    assert humanize("crm.flag_account") == "CRM · flag account"
    assert humanize("invoice_id") == "Invoice ID"
    assert humanize("provisioning") == "Provisioning"
    assert humanize(None) == "—"


def test_a_titled_chart_with_a_legend_leaves_the_legend_a_row_of_its_own() -> None:
    bucket = {"start": T0, "figures": figures()}
    with_legend = charts.latency_trend([bucket])
    single = charts.per_target([figures(group="erp")], field="p95_s", title="p95", unit="s")

    assert len(with_legend.data) > 1
    assert with_legend.layout.margin.t > single.layout.margin.t
    assert with_legend.layout.title.yanchor == "top"
    assert list(single.data[0].x) == ["ERP"]
