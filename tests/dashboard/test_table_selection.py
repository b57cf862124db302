"""A row picked in a live table stays picked by its ID while the rows around it move."""

from streamlit.testing.v1 import AppTest


def _table_app() -> None:
    import streamlit as st

    from dashboard.ui import pick_by_id

    ids = st.session_state.get("ids", ["a", "b", "c"])
    event = st.dataframe(
        [{"id": i} for i in ids], key="tbl", on_select="rerun", selection_mode="single-row"
    )
    new = pick_by_id(event, ids, table="tbl", chosen="chosen")
    st.markdown(f"chosen={st.session_state.get('chosen')} new={new}")


def _select(at: AppTest, row: int | None) -> None:
    rows = [] if row is None else [row]
    at.session_state["tbl"] = {"selection": {"rows": rows, "columns": [], "cells": []}}


def _shown(at: AppTest) -> str:
    return str(at.markdown[-1].value)


def test_the_picked_id_survives_rows_moving_under_the_selection() -> None:
    at = AppTest.from_function(_table_app)
    _select(at, 1)
    at.run()
    assert _shown(at) == "chosen=b new=True"

    # A new row arrives on top: Streamlit keeps the selection at row 1, which is now "a".
    at.session_state["ids"] = ["z", "a", "b", "c"]
    at.run()
    assert _shown(at) == "chosen=b new=False"

    # "b" leaves the table: it stays chosen (its detail says what became of it).
    at.session_state["ids"] = ["z", "a", "c"]
    at.run()
    assert _shown(at) == "chosen=b new=False"


def test_a_different_row_is_a_new_pick_and_clearing_keeps_the_last() -> None:
    at = AppTest.from_function(_table_app)
    _select(at, 0)
    at.run()
    assert _shown(at) == "chosen=a new=True"

    _select(at, 2)
    at.run()
    assert _shown(at) == "chosen=c new=True"

    _select(at, None)
    at.run()
    assert _shown(at) == "chosen=c new=False"
