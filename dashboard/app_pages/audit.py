"""The audit log, for admins: every mutating or denied call, who, why and the outcome."""

import streamlit as st

from dashboard import data
from dashboard.client import ApiError
from dashboard.format import humanize, when
from dashboard.ui import ctx, empty, header, show_error

c = ctx()
header("Audit log", "Every change and every refusal, newest first.")
cols = st.columns(3)
actor = cols[0].text_input("Actor", key="audit_actor")
action = cols[1].text_input("Action", key="audit_action", placeholder="e.g. transaction.replay")
outcome = cols[2].selectbox("Outcome", ["", "succeeded", "rejected", "denied", "failed"], key="audit_outcome",
                            format_func=lambda o: humanize(o) if o else "Any")  # fmt: skip
try:
    rows = data.audit(c.api_url, c.token,
                      data.filters_key(actor=actor.strip(), action=action.strip(), outcome=outcome, limit=200))["items"]  # fmt: skip
except ApiError as exc:
    show_error(exc, doing="load the audit log")
    st.stop()
if not rows:
    empty(
        "No audit rows match",
        "Replays, resolutions, key changes and every refused call are written here.",
    )
else:
    st.dataframe(
        [
            {
                "At": when(a["at"]),
                "Actor": a["actor"],
                "Role": a.get("role") or "—",
                "Action": a["action"],
                "Target": a.get("target") or "—",
                "Outcome": humanize(a["outcome"]),
                "Reason": a.get("reason") or "—",
            }
            for a in rows
        ],  # fmt: skip
        hide_index=True,
        key="audit_table",
    )
