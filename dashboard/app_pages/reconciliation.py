"""Reconciliation, for finance: does the ERP hold exactly what billing invoiced, and what is off?

Built to the contract in DESIGN.md and issue 6; field names are read defensively because that
API is newer than this page. Where the API lacks the endpoints, the page says so.
"""

from datetime import UTC, datetime
from typing import Any

import streamlit as st

from dashboard import charts, data
from dashboard.client import ApiError
from dashboard.format import (
    RUN_STAGES,
    add_money,
    finished_message,
    humanize,
    money,
    money_map,
    when,
)
from dashboard.ui import Ctx, ctx, empty, header, selectable_table, show_error, unavailable

KINDS = ["", "missing_in_erp", "orphan_in_erp", "amount_mismatch", "currency_mismatch",
         "status_mismatch", "duplicate_posting", "posted_but_missing",
         "crm_contract_value_mismatch", "revenue_schedule_mismatch"]  # fmt: skip
SIDES = (
    ("billing", "Billing"),
    ("erp", "ERP"),
    ("crm", "CRM"),
    ("expected", "Expected"),
    ("actual", "Actual"),
)


def _runs(c: Ctx) -> None:
    st.subheader("Latest run of each month")
    try:
        runs = data.reconciliation_runs(c.api_url, c.token)
    except ApiError as exc:
        if exc.unavailable:
            unavailable("The list of reconciliation runs", "GET /v1/reconciliation/runs")
        else:
            show_error(exc, doing="list reconciliation runs")
        return
    if not runs:
        empty("No reconciliation runs yet", "Runs appear when the schedule starts one or someone "
              "with the finance role triggers one below for a period.")  # fmt: skip
        return
    latest = data.latest_per_period(runs)
    st.dataframe(
        [
            {
                "Run": r.get("id"),
                "Period": r.get("period") or "—",
                "State": humanize(r.get("state")),
                "Progress": f"{r.get('progress', 0)} %",
                "Started": when(r.get("started_at")),
                "Finished": when(r.get("finished_at")),
                "Found": r.get("found_count", 0),
                "New": r.get("new_count", 0),
                "Auto-resolved": r.get("auto_resolved_count", 0),
                "Amount at risk": money_map(run_at_risk(r)),
                "Error": r.get("error") or "",
            }
            for r in latest[:24]
        ],  # fmt: skip
        hide_index=True,
        key="recon_runs_table",
    )
    st.caption(f"The newest run of each of {len(latest)} months, from the last {len(runs)} runs; "
               "GET /v1/reconciliation/runs?period=YYYY-MM lists every run of a month.")  # fmt: skip


def run_at_risk(run: dict[str, Any]) -> dict[str, int]:
    """A run's summary {kind: {"count", "amount_minor": {currency: n}}} summed per currency."""
    total: dict[str, int] = {}
    for figures in (run.get("summary") or {}).values():
        total = add_money(total, figures.get("amount_minor"))
    return total


# What the last run started, or the mismatch resolved, from this page came to: shown once,
# after the page is drawn again to include it.
_STARTED = "recon_started"
_RESOLVED = "recon_resolved"
# The run started from this page, followed until it finishes.
_FOLLOWING = "recon_following"


def _trigger(c: Ctx) -> None:
    with st.form("recon_trigger_form", border=True):
        st.markdown("**Trigger a run**")
        period = st.text_input("Period", value=datetime.now(UTC).strftime("%Y-%m"), key="recon_period",
                               help="A month, YYYY-MM")  # fmt: skip
        go = st.form_submit_button(
            "Start reconciliation", type="primary", icon=":material/play_arrow:"
        )
    if go:
        try:
            run = c.client.reconciliation_start({"period": period.strip()})
        except ApiError as exc:
            show_error(exc, doing="start a reconciliation run")
            return
        st.session_state[_FOLLOWING] = run["id"]
        data.clear_live()
        # The runs table was drawn before this run existed: draw the page again with it.
        st.rerun()
    _follow(c)
    started = st.session_state.pop(_STARTED, None)
    if started:
        (st.success if started["ok"] else st.error)(started["message"])


def _follow(c: Ctx) -> None:
    run_id = st.session_state.get(_FOLLOWING)
    if run_id is None:
        return

    # Polled while the run works; once it has finished the page is drawn again without this.
    @st.fragment(run_every="2s")
    def progress() -> None:
        try:
            run = c.client.reconciliation_run(str(run_id))
        except ApiError as exc:
            show_error(exc, doing="follow the reconciliation run")
            return
        if run["state"] == "running":
            stage = RUN_STAGES.get(run.get("stage") or "", "starting")
            st.progress(run.get("progress", 0) / 100,
                        text=f"Run {run_id} for {run['period']}: {stage}…")  # fmt: skip
            return
        st.session_state.pop(_FOLLOWING, None)
        st.session_state[_STARTED] = finished_message(run)
        data.clear_live()
        st.rerun(scope="app")

    progress()


def _filters() -> dict[str, Any]:
    cols = st.columns(3)
    kind = cols[0].selectbox(
        "Kind", KINDS, key="recon_kind", format_func=lambda k: humanize(k) if k else "Any"
    )
    status = cols[1].selectbox("Status", ["open", "resolved", "auto_resolved", ""], key="recon_status",
                               format_func=lambda s: humanize(s) if s else "Any")  # fmt: skip
    period = cols[2].text_input("Period", key="recon_filter_period", placeholder="YYYY-MM, any")
    return {"kind": kind or None, "status": status or None, "period": period.strip() or None}


def _drill(c: Ctx, m: dict[str, Any]) -> None:
    amount, currency = charts.amount_of(m)
    st.markdown(f"#### {humanize(m.get('kind'))} · {money(amount, currency)} at risk")
    left, right = st.columns(2)
    for col, side in ((left, "source"), (right, "target")):
        col.markdown(f"**{humanize(m.get(f'{side}_system') or side)}**")
        col.dataframe(
            [
                {"Field": "ID", "Value": str(m.get(f"{side}_id") or "—")},
                {
                    "Field": "Amount",
                    "Value": money(m.get(f"{side}_amount_minor"), m.get(f"{side}_currency")),
                },
                {"Field": "Status", "Value": str(m.get(f"{side}_status") or "—")},
            ],
            hide_index=True,
            key=f"recon_side_{side}",
        )
    st.caption(
        f"First seen {when(m.get('first_seen_at'))} · last seen {when(m.get('last_seen_at'))}"
    )
    for cid in m.get("correlation_ids") or (
        [m["correlation_id"]] if m.get("correlation_id") else []
    ):
        st.page_link(
            "app_pages/transactions.py", label=f"Lineage of {cid} →", query_params={"q": cid}
        )
    may_replay = c.identity.can_operate or c.identity.can_reconcile
    if may_replay and m.get("status", "open") == "open" and m.get("correlation_ids"):
        _replay(c, m)
    if c.identity.can_reconcile and m.get("status", "open") == "open":
        with st.form("recon_resolve_form", border=False):
            note = st.text_area("Resolution note (required)", key="recon_resolve_note")
            go = st.form_submit_button("Resolve mismatch", type="primary")
        if go:
            if not note.strip():
                st.error("A note is required.")
                return
            try:
                c.client.mismatch_resolve(str(m["id"]), note=note)
            except ApiError as exc:
                show_error(exc, doing="resolve the mismatch")
                return
            data.clear_live()
            st.session_state[_RESOLVED] = f"Mismatch {m['id']} resolved."
            # Drawn again: the table above still listed it as open.
            st.rerun()


def _replay(c: Ctx, m: dict[str, Any]) -> None:
    """Replay the transactions the mismatch links to; the next run shows whether that fixed it."""
    if m.get("last_replay_at"):
        runs = ", ".join(
            f"{r.get('correlation_id')} run {r.get('run_number')}"
            for r in m.get("last_replay_runs") or []
        )
        st.caption(
            f"Last replayed {when(m.get('last_replay_at'))} by {m.get('last_replay_by')}: {runs}"
        )
    reason = st.text_input("Replay reason (required, kept in the audit log)", key="recon_replay_reason",
                           placeholder="e.g. the ERP lost the posting; post it again")  # fmt: skip
    if st.button("Replay linked transactions", key="recon_replay_go", icon=":material/replay:",
                 disabled=not reason.strip()):  # fmt: skip
        try:
            result = c.client.mismatch_replay(str(m["id"]), reason=reason.strip())
        except ApiError as exc:
            show_error(exc, doing="replay from the mismatch")
            return
        data.clear_live()
        started = ", ".join(
            f"{r.get('correlation_id')} (run {r.get('run_number')})"
            for r in result.get("replays", [])
        )
        st.success(f"Replay started: {started}. The next reconciliation run shows if it fixed it.")


def _picked(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The mismatch last picked in the table, else the one a link or test named by id."""
    wanted = st.session_state.get("recon_selected") or st.query_params.get("mismatch")
    return next((r for r in rows if str(r.get("id")) == str(wanted)), None) if wanted else None


def _csv(c: Ctx, flt: dict[str, Any], rows: list[dict[str, Any]]) -> bytes:
    """The API's own CSV export (every match, not one page); the rows shown if it has none."""
    try:
        return c.client.mismatches_csv(**flt).encode()
    except ApiError:
        return data.csv_bytes(rows)


def _mismatches(c: Ctx) -> None:
    st.subheader("Mismatches")
    resolved = st.session_state.pop(_RESOLVED, None)
    if resolved:
        st.success(resolved)
    flt = _filters()
    try:
        rows = data.mismatches(c.api_url, c.token, data.filters_key(**flt))
    except ApiError as exc:
        if exc.unavailable:
            unavailable("The mismatch list", "GET /v1/mismatches")
        else:
            show_error(exc, doing="list mismatches")
        return
    if not rows:
        empty("No mismatches", "Billing and the ERP agree for these filters — or no run has covered "
              "this period yet. A reconciliation run fills this list with every difference it finds.")  # fmt: skip
        return
    at_risk: dict[str, int] = {}
    for r in rows:
        amount, currency = charts.amount_of(r)
        at_risk = add_money(at_risk, {currency or "—": abs(amount)})
    cols = st.columns(3)
    cols[0].metric("Mismatches", f"{len(rows):,}")
    cols[1].metric("Amount at risk", money_map(at_risk))
    cols[2].metric("Kinds", f"{len({r.get('kind') for r in rows})}")
    st.plotly_chart(charts.mismatches_by_kind(rows), key="recon_kind_chart")
    table = [{"ID": r.get("id"), "Kind": humanize(r.get("kind")), "Period": r.get("period") or "—",
              "Status": humanize(r.get("status")), "Amount at risk": money(*charts.amount_of(r)),
              "System": r.get("system") or "—", "Billing ID": r.get("source_id") or "—", "Target ID": r.get("target_id") or "—"} for r in rows]  # fmt: skip
    selectable_table(table, [r.get("id") for r in rows], key="recon_mismatch_table",
                     chosen="recon_selected")  # fmt: skip
    st.download_button("Export CSV", _csv(c, flt, rows), file_name="mismatches.csv", mime="text/csv",
                       key="recon_export", icon=":material/download:")  # fmt: skip
    chosen = _picked(rows)
    if chosen is not None:
        st.divider()
        _drill(c, chosen)


def render() -> None:
    c = ctx()
    header(
        "Reconciliation",
        "Does the ERP hold exactly what billing invoiced? What is off, by how much, and why?",
    )
    left, right = st.columns([2.2, 1])
    with left:
        _runs(c)
    with right:
        if c.identity.can_reconcile:
            if data.has_route(c.api_url, "/v1/reconciliation/runs", "POST"):
                _trigger(c)
            else:
                unavailable("Triggering a run", "POST /v1/reconciliation/runs")
        else:
            st.caption("Triggering runs and resolving mismatches is for the finance role; "
                       "replaying the transactions behind a mismatch is for finance and ops.")  # fmt: skip
    _mismatches(c)


render()
