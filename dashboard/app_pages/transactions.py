"""Transactions and lineage: find anything by any ID, and see where it went and why it waits."""

from typing import Any

import streamlit as st

from dashboard import charts, data
from dashboard.client import ApiError
from dashboard.format import ago, duration, humanize, money, parse_time, when
from dashboard.ui import Ctx, ctx, empty, header, selectable_table, show_error, state_badge

STATES = ["received", "pending", "running", "retrying", "posted", "exception",
          "manually_resolved", "reversed", "ignored"]  # fmt: skip
ACTIVE = {"received", "pending", "running", "retrying"}


def _tx_rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "Correlation ID": t["correlation_id"],
            "State": humanize(t["state"]),
            "Workflow": humanize(t.get("workflow")),
            "Invoice": t.get("invoice_id") or "—",
            "Customer": t.get("customer_id") or "—",
            "Amount": money(t.get("amount_minor"), t.get("currency")),
            "Received": when(t["received_at"]),
            "Runs": t.get("run_count", 0),
        }
        for t in items
    ]


def _pick(items: list[dict[str, Any]], key: str) -> None:
    """A selectable table of transactions; the chosen one opens below."""
    selectable_table(
        _tx_rows(items), [t["correlation_id"] for t in items], key=key, chosen="tx_selected"
    )


def _search(c: Ctx, query: str) -> None:
    try:
        result = data.search(c.api_url, c.token, query)
    except ApiError as exc:
        show_error(exc, doing="search")
        return
    hits = result["items"]
    if not hits:
        empty(f"Nothing matches “{query}”",
              "Search takes a correlation ID, a Stripe ID (in_…, sub_…, cus_…, evt_…), an ERP "
              "document number or a CRM deal ID. A transaction appears once its event reached Concord.")  # fmt: skip
        return
    st.caption(f"{len(hits)} match(es); matched by: "
               + ", ".join(sorted({m for h in hits for m in h["matched_by"]})))  # fmt: skip
    if len(hits) == 1:
        st.session_state["tx_selected"] = hits[0]["transaction"]["correlation_id"]
    _pick([h["transaction"] for h in hits], "tx_hits_table")


def _recent(c: Ctx) -> None:
    preset = [s for s in st.query_params.get("state", "").split(",") if s in STATES]
    states = st.multiselect("State", STATES, default=preset, key="tx_states", format_func=humanize)
    try:
        page = data.transactions(c.api_url, c.token, data.filters_key(state=states, limit=100))
    except ApiError as exc:
        show_error(exc, doing="list transactions")
        return
    if not page["items"]:
        empty("No transactions here yet",
              "Transactions appear when billing sends events to Concord (signed Stripe webhooks or "
              "CloudEvents). Clear the state filter, or run <code>concord demo</code>.")  # fmt: skip
        return
    _pick(page["items"], "tx_recent_table")


# States and step states a person must act on: shown as errors, not as something to wait for.
_NEEDS_ACTION = frozenset({"exception", "reversed", "failed_terminal"})


def _waits(tx: dict[str, Any]) -> list[tuple[bool, str]]:
    """Why the transaction is where it is, in words; True where a person must act."""
    reasons: list[tuple[bool, str]] = []
    if tx.get("state_reason"):
        reasons.append((tx["state"] in _NEEDS_ACTION,
                        f"**{humanize(tx['state'])}:** {tx['state_reason']}"))  # fmt: skip
    if tx.get("next_attempt_at"):
        reasons.append((False, f"Next attempt at {when(tx['next_attempt_at'])} (retry back-off)."))
    for run in tx["runs"][-1:]:
        for step in run["steps"]:
            if step["state"] in {"failed_retryable", "failed_terminal", "pending"} and step.get(
                "error_message"
            ):
                reasons.append((step["state"] in _NEEDS_ACTION,
                                f"Step `{step['name']}` on {step['target_system']}: "
                                f"{humanize(step.get('error_class'))} — {step['error_message']}"))  # fmt: skip
            if step.get("next_attempt_at"):
                reasons.append(
                    (False, f"Step `{step['name']}` waits until {when(step['next_attempt_at'])}.")
                )
    return reasons


def _summary(tx: dict[str, Any]) -> None:
    st.markdown(f"#### {humanize(tx.get('workflow'))} {state_badge(tx['state'])}")
    st.caption(
        f"Correlation ID `{tx['correlation_id']}` · {tx['event_type']} from {tx['source_system']}"
    )
    cols = st.columns(5)
    cols[0].metric("Amount", money(tx.get("amount_minor"), tx.get("currency")))
    cols[1].metric("Invoice", tx.get("invoice_id") or "—")
    cols[2].metric("Customer", tx.get("customer_id") or "—")
    cols[3].metric("Runs", tx.get("run_count", 0))
    end = parse_time(tx.get("completed_at"))
    start = parse_time(tx["received_at"])
    if end and start:
        # A transaction that ended in an exception was not carried end to end.
        label = "End to end" if tx["state"] == "posted" else f"To {humanize(tx['state']).lower()}"
        cols[4].metric(label, duration((end - start).total_seconds()))
    else:
        cols[4].metric(
            "End to end",
            "Open",
            delta=f"received {ago(start)}",
            delta_color="off",
            delta_arrow="off",
        )
    for act, line in _waits(tx):
        if act:
            st.error(line, icon=":material/error:")
        else:
            st.info(line, icon=":material/hourglass_top:")


def _runs(tx: dict[str, Any]) -> None:
    st.dataframe(
        [
            {
                "Run": r["number"],
                "Trigger": humanize(r["trigger"]),
                "State": humanize(r["state"]),
                "Requested by": r.get("requested_by") or "system",
                "Reason": r.get("reason") or "—",
                "Started": when(r["started_at"]),
                "Ended": when(r.get("ended_at")),
            }  # fmt: skip
            for r in tx["runs"]
        ],
        hide_index=True,
        key="tx_runs_table",
    )
    steps = [
        {
            "Run": r["number"],
            "Step": s["name"],
            "Target": s["target_system"],
            "State": humanize(s["state"]),
            "Attempts": s["attempt_count"],
            "External ID": s.get("external_id") or "—",
            "Idempotency key": s["idempotency_key"],
            "Error": s.get("error_message") or "",
        }  # fmt: skip
        for r in tx["runs"]
        for s in r["steps"]
    ]
    if steps:
        st.dataframe(steps, hide_index=True, key="tx_steps_table")


def _records(tx: dict[str, Any]) -> None:
    refs = tx["external_refs"]
    if refs:
        st.dataframe(
            [
                {
                    "System": r["system"],
                    "Object": r["object_type"],
                    "External ID": r["external_id"],
                    "Linked": when(r["created_at"]),
                }
                for r in refs
            ],  # fmt: skip
            hide_index=True,
            key="tx_refs_table",
        )
    else:
        st.caption(
            "No external records linked yet: they appear as targets confirm what was posted."
        )
    event = tx.get("event")
    if event:
        raw = event.get("payload")
        st.markdown(
            "**Source event**"
            + ("" if isinstance(raw, dict) else " (the raw payload is shown to admins only)")
        )
        st.dataframe(
            [
                {
                    "Source": event["source"],
                    "Event ID": event["source_event_id"],
                    "Type": event["event_type"],
                    "Status": humanize(event["status"]),
                    "Deliveries": event["deliveries"],
                    "Received": when(event["received_at"]),
                    "Ignored because": event.get("ignored_reason") or "—",
                }
            ],  # fmt: skip
            hide_index=True,
            key="tx_event_table",
        )
        if isinstance(raw, dict):
            with st.expander(
                "Raw payload, as received (admins only)", icon=":material/data_object:"
            ):
                st.json(raw, expanded=1)
    if tx["exceptions"]:
        st.markdown("**Exceptions**")
        st.dataframe(
            [
                {
                    "ID": e["id"],
                    "Status": humanize(e["status"]),
                    "Classification": humanize(e["classification"]),
                    "Message": e["message"],
                    "Suggested": e.get("suggested_action") or "—",
                    "Owner": e.get("owner") or "unassigned",
                    "Opened": when(e["created_at"]),
                }
                for e in tx["exceptions"]
            ],  # fmt: skip
            hide_index=True,
            key="tx_exceptions_table",
        )


def _graph(c: Ctx, correlation_id: str) -> None:
    try:
        graph = data.lineage(c.api_url, c.token, correlation_id)
    except ApiError as exc:
        show_error(exc, doing="load the lineage graph")
        return
    st.plotly_chart(charts.lineage_graph(graph["nodes"], graph["edges"]), key="tx_lineage_chart")
    if graph["related"]:
        st.markdown("**Same subscription or invoice, in business order**")
        st.dataframe(_tx_rows(graph["related"]), hide_index=True, key="tx_related_table")


def _audit(c: Ctx, correlation_id: str) -> None:
    if not c.identity.is_admin:
        st.caption("The audit trail is visible to admins. Runs above show who replayed and why.")
        return
    try:
        rows = data.audit(c.api_url, c.token, data.filters_key(target=correlation_id))["items"]
    except ApiError as exc:
        show_error(exc, doing="load the audit trail")
        return
    if not rows:
        st.caption("Nobody has acted on this transaction by hand.")
        return
    st.dataframe(
        [
            {
                "At": when(a["at"]),
                "Actor": a["actor"],
                "Role": a.get("role") or "—",
                "Action": a["action"],
                "Outcome": a["outcome"],
                "Reason": a.get("reason") or "—",
            }
            for a in rows
        ],  # fmt: skip
        hide_index=True,
        key="tx_audit_table",
    )


def _detail(c: Ctx, correlation_id: str) -> None:
    try:
        tx = data.transaction(c.api_url, c.token, correlation_id)
        if tx["state"] in ACTIVE:
            # Still moving: read past the cache so the state shown is the current one.
            tx = c.client.transaction(correlation_id)
    except ApiError as exc:
        show_error(exc, doing=f"load transaction {correlation_id}")
        return
    _summary(tx)
    timeline, graph, runs, records, audit = st.tabs(
        ["Timeline", "Lineage graph", "Runs & steps", "Records & event", "Audit trail"]
    )
    with timeline:
        if any(s["attempts"] for r in tx["runs"] for s in r["steps"]):
            st.plotly_chart(charts.step_timeline(tx["runs"]), key="tx_timeline_chart")
            st.caption("Bars are attempts (coloured by outcome); dotted gaps are retry waits.")
        else:
            empty("No attempts yet", "The timeline fills in as a worker calls the target systems.")
    with graph:
        _graph(c, correlation_id)
    with runs:
        _runs(tx)
    with records:
        _records(tx)
    with audit:
        _audit(c, correlation_id)


def render() -> None:
    c = ctx()
    header(
        "Transactions & lineage",
        "What happened to invoice in_123, subscription sub_9 or correlation X?",
    )
    preset = st.query_params.get("q", "")
    query = st.text_input("Search by any ID", value=preset, key="tx_query",
                          placeholder="correlation ID, in_…, sub_…, cus_…, evt_…, ERP document…").strip()  # fmt: skip
    if query != st.session_state.get("tx_last_query"):
        st.session_state["tx_last_query"] = query
        st.session_state.pop("tx_selected", None)
    if query:
        _search(c, query)
    else:
        _recent(c)
    selected = st.session_state.get("tx_selected")
    if selected:
        st.divider()

        @st.fragment(run_every="10s")
        def live_detail() -> None:
            _detail(c, str(selected))

        live_detail()


render()
