"""Exceptions, for operations: what failed, why, and can I safely replay or resolve it?"""

from typing import Any

import streamlit as st

from dashboard import actions, charts, data
from dashboard.client import ApiError
from dashboard.format import add_money, duration, humanize, money, money_map
from dashboard.ui import Ctx, ctx, empty, header, refresh_button, selectable_table, show_error

CLASSIFICATIONS = ["", "connection", "timeout", "rate_limit", "validation", "mapping_missing",
                   "conflict", "retry_budget_exhausted", "auth", "terminal"]  # fmt: skip
PRESSURE = ("connection", "timeout", "rate_limit")


def _filters() -> dict[str, Any]:
    find = st.text_input(
        "Find",
        key="exc_find",
        placeholder="correlation ID, invoice, customer or subscription ID (narrows the queue below)",
    )
    cols = st.columns([1, 1.3, 1.2, 1.2, 1])
    status = cols[0].selectbox(
        "Status", ["open", "resolved"], key="exc_status", format_func=humanize
    )
    classification = cols[1].selectbox("Classification", CLASSIFICATIONS, key="exc_class",
                                       format_func=lambda v: humanize(v) if v else "Any")  # fmt: skip
    workflow = cols[2].text_input(
        "Workflow", key="exc_workflow", placeholder="e.g. invoice_generated"
    )
    owner = cols[3].text_input("Owner", key="exc_owner", placeholder="anyone")
    unassigned = cols[4].toggle("Unassigned only", key="exc_unassigned")
    return {
        "status": status,
        "classification": classification or None,
        "workflow": workflow.strip() or None,
        "owner": owner.strip() or None,
        "unassigned": unassigned or None,
        "limit": 200,
        "find": find.strip(),
    }


def _found(c: Ctx, items: list[dict[str, Any]], find: str) -> list[dict[str, Any]]:
    """The queue narrowed to the transactions an ID belongs to (any ID, via /v1/search)."""
    try:
        hits = data.search(c.api_url, c.token, find)["items"]
    except ApiError as exc:
        show_error(exc, doing="search")
        hits = []
    ids = {h["transaction"]["correlation_id"] for h in hits}
    return [i for i in items if i["correlation_id"] in ids or find in i["correlation_id"]]


def _tiles(items: list[dict[str, Any]], more: bool) -> None:
    at_risk: dict[str, int] = {}
    for i in items:
        if i.get("amount_minor") is not None and i.get("currency"):
            at_risk = add_money(at_risk, {i["currency"]: i["amount_minor"]})
    cols = st.columns(4)
    cols[0].metric("In queue", f"{len(items):,}{'+' if more else ''}")
    cols[1].metric("Oldest", duration(max((i["age_s"] for i in items), default=None)))
    cols[2].metric("Unassigned", f"{sum(1 for i in items if not i.get('owner')):,}")
    cols[3].metric("Amount affected", money_map(at_risk))


def _queue(items: list[dict[str, Any]]) -> dict[str, Any] | None:
    rows = [
        {
            "ID": i["id"],
            "Age": duration(i["age_s"]),
            "Classification": humanize(i["classification"]),
            "Workflow": humanize(i.get("workflow")),
            "Amount": money(i.get("amount_minor"), i.get("currency")),
            "Owner": i.get("owner") or "unassigned",
            "Suggested action": i.get("suggested_action") or "—",
            "Message": i["message"],
            "Correlation ID": i["correlation_id"],
        }
        for i in items
    ]
    if selectable_table(
        rows, [i["id"] for i in items], key="exc_queue_table", chosen="exc_selected"
    ):
        # The queue lives in a fragment: the detail below it needs a full run to follow.
        st.rerun()
    chosen = st.session_state.get("exc_selected")
    return next((i for i in items if i["id"] == chosen), None)


def _detail(c: Ctx, item: dict[str, Any]) -> None:
    st.markdown(f"#### Exception {item['id']} · {humanize(item['classification'])}")
    st.caption(f"{item['message']} · suggested: {item.get('suggested_action') or '—'}")
    st.page_link("app_pages/transactions.py", label="Open its lineage →",
                 query_params={"q": item["correlation_id"]})  # fmt: skip
    if not c.identity.can_operate:
        st.caption("Replay, resolve and assign are for the ops role.")
        return
    if item["status"] != "open":
        st.caption(f"Resolved by {item.get('resolved_by') or '—'}.")
        return
    try:
        tx = c.client.transaction(item["correlation_id"])
    except ApiError as exc:
        show_error(exc, doing="load the transaction")
        return
    replay, resolve, assign = st.tabs(["Replay", "Resolve", "Assign"])
    with replay:
        actions.replay_panel(c, tx)
    with resolve:
        actions.resolve_panel(c, tx)
    with assign:
        actions.assign_panel(c, item)


def render() -> None:
    c = ctx()
    header("Exceptions", "What failed, why, and can it be safely replayed or resolved?")
    actions.follow(c)
    flt = _filters()

    @st.fragment(run_every="30s")
    def live() -> dict[str, Any] | None:
        try:
            query = {k: v for k, v in flt.items() if k != "find"}
            page = data.exceptions(c.api_url, c.token, data.filters_key(**query))
        except ApiError as exc:
            show_error(exc, doing="load the exception queue")
            return None
        items = page["items"]
        if flt["find"]:
            items = _found(c, items, flt["find"])
            if len(items) == 1:
                st.session_state["exc_selected"] = items[0]["id"]
        if not items:
            empty(
                "The queue is empty"
                if flt["status"] == "open"
                else "Nothing matches these filters",
                "A transaction lands here when a step fails for good: a terminal error (validation, "
                "missing mapping, auth) or retries exhausted on a target that stayed down. "
                "Clear the filters to see more.",
            )
            return None
        _tiles(items, bool(page.get("next_cursor")))
        left, right = st.columns([1, 2.4])
        left.plotly_chart(charts.counts_bar(items, key="classification", title="By classification",
                                            highlight=PRESSURE), key="exc_class_chart")  # fmt: skip
        with right:
            return _queue(items)

    selected = live()
    refresh_button("exc_refresh")
    if selected is not None:
        st.divider()
        _detail(c, selected)
    if c.identity.can_operate:
        st.divider()
        with st.expander("Bulk replay by the current filter", icon=":material/dynamic_feed:"):
            actions.bulk_panel(c, flt["workflow"])
        with st.expander("Recent bulk replays"):
            actions.recent_bulk(c)


render()
