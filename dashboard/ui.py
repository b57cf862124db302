"""Shared layout: the signed-in context, page headers, error and empty states, tiles."""

import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import streamlit as st

from dashboard import charts, data
from dashboard.client import ApiError, ConcordClient
from dashboard.format import badge_color, humanize
from dashboard.identity import Identity

DEFAULT_API_URL = "http://127.0.0.1:8000"

CSS = """
<style>
  .block-container {padding-top: 2.2rem; padding-bottom: 2rem; max-width: 1400px;}
  [data-testid="stMetric"] {background: #f8fafc; border: 1px solid #e2e8f0; border-radius: 10px;
      padding: 0.7rem 0.9rem;}
  [data-testid="stMetricLabel"] p {font-size: 0.8rem; color: #475569; text-transform: uppercase;
      letter-spacing: 0.03em;}
  [data-testid="stMetricValue"] {font-size: 1.55rem;}
  /* Streamlit cuts a long label to one line with an ellipsis ("OVERDUE N…"); wrap it instead. */
  [data-testid="stMetricLabel"] [data-testid="stMarkdownContainer"],
  [data-testid="stMetricLabel"] p {white-space: normal; overflow: visible; text-overflow: clip;}
  /* The same for a value ("1 min 5…" in a sixth of the page). */
  [data-testid="stMetricValue"], [data-testid="stMetricValue"] > div {white-space: normal;
      overflow: visible; text-overflow: clip;}
  .concord-empty {border: 1px dashed #cbd5e1; border-radius: 10px; padding: 1.1rem 1.3rem;
      color: #475569; background: #fbfdff;}
  .concord-empty b {color: #0f172a;}
  .concord-sub {color: #64748b; margin-top: -0.6rem; margin-bottom: 1rem;}
  .st-key-concord_chart_preload {display: none;}
</style>
"""


@dataclass(frozen=True)
class Ctx:
    """What every page needs: where the API is, the caller's bearer and who they are."""

    api_url: str
    token: str
    identity: Identity

    @property
    def client(self) -> ConcordClient:
        return data.client(self.api_url, self.token)


def api_url() -> str:
    # Session state wins so tests (and a future URL picker) can point one session elsewhere.
    url = (
        st.session_state.get("auth_api_url") or os.environ.get("CONCORD_API_URL") or DEFAULT_API_URL
    )
    return str(url).rstrip("/")


def ctx() -> Ctx:
    identity = st.session_state.get("auth_identity")
    token = st.session_state.get("auth_token")
    if not isinstance(identity, Identity) or not token:
        st.warning("Sign in first.")
        st.stop()
    return Ctx(api_url=api_url(), token=str(token), identity=identity)


def preload_charts() -> None:
    """An empty chart out of sight, so that the browser loads and runs Plotly, its largest
    script (half a second of JavaScript on a 2-core machine), while the user signs in rather
    than after: the page that opens next draws up to three charts (docs/performance.md)."""
    with st.container(key="concord_chart_preload"):
        st.plotly_chart(charts.blank(), key="concord_chart_preload_figure")


def header(title: str, subtitle: str) -> None:
    st.title(title)
    st.markdown(f"<div class='concord-sub'>{subtitle}</div>", unsafe_allow_html=True)


def empty(title: str, explanation: str) -> None:
    st.markdown(
        f"<div class='concord-empty'><b>{title}</b><br>{explanation}</div>", unsafe_allow_html=True
    )


def unavailable(feature: str, endpoint: str) -> None:
    empty(
        f"{feature} is not available from this API yet",
        f"This view reads <code>{endpoint}</code>, which the Concord API at "
        f"<code>{api_url()}</code> does not serve. It fills in as soon as the API has it.",
    )


def show_error(exc: ApiError, *, doing: str) -> None:
    """The API's error code and message, in words, never a stack trace."""
    if exc.unavailable:
        st.info(f"Could not {doing}: this API has no such endpoint yet.")
        return
    if exc.status == 0:
        st.error(f"Could not {doing}: {exc.message}")
        return
    extra = ""
    if exc.details:
        extra = " · " + "; ".join(f"{k}: {v}" for k, v in exc.details.items() if k != "errors")
        errors = exc.details.get("errors")
        if isinstance(errors, list):
            extra += " · " + "; ".join(
                f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg')}" for e in errors[:5]
            )
    st.error(
        f"Could not {doing} — the API answered {exc.status} `{exc.code}`: {exc.message}{extra}"
    )


def state_badge(state: str | None) -> str:
    """Markdown badge for a state, e.g. :red-badge[Exception]."""
    return f":{badge_color(state)}-badge[{humanize(state)}]"


def refresh_button(key: str, *, fresh_flag: str | None = None) -> None:
    """Drop the cached answers and draw again; `fresh_flag` is set in the session state for the
    page to ask the API for figures read after the click rather than shared ones."""
    if st.button("Refresh now", key=key, icon=":material/refresh:", type="tertiary"):
        data.clear_live()
        if fresh_flag:
            st.session_state[fresh_flag] = True
        st.rerun()


def selectable_table(
    rows: list[dict[str, Any]], ids: Sequence[Hashable], *, key: str, chosen: str
) -> bool:
    """A table the user picks one row of, whose ID st.session_state[chosen] keeps; True when
    this run brings a new pick.

    Streamlit keeps a keyed table's selection as a row position, and a live table's rows move
    between runs (a new transaction arrives on top, an exception someone resolved leaves). So
    a changed selection is read against the rows the user saw when picking, and the selection
    drawn follows the chosen record to wherever it now is (none once it has left). Unticking
    the row lets go of the record."""
    shown, drawn = f"{key}_ids", f"{key}_row"
    # No state at all: the table was not on the last page drawn (Streamlit drops a widget's
    # state when another page runs), which is no click.
    state = st.session_state.get(key)
    picked = list(state["selection"]["rows"]) if state else []
    incoming = picked[0] if picked else None
    new = False
    if state is not None and incoming != st.session_state.get(drawn):
        before = st.session_state.get(shown) or list(ids)
        if incoming is None:
            st.session_state.pop(chosen, None)
        elif incoming < len(before):
            st.session_state[chosen] = before[incoming]
            new = True
    wanted = st.session_state.get(chosen)
    row = ids.index(wanted) if wanted in ids else None
    st.session_state[key] = {"selection": {"rows": [] if row is None else [row], "columns": [], "cells": []}}  # fmt: skip
    st.session_state[drawn] = row
    st.session_state[shown] = list(ids)
    st.dataframe(rows, hide_index=True, key=key, on_select="rerun", selection_mode="single-row")
    return new
