"""A row picked in a live table stays picked by its ID while the rows around it move.

The browser's click is played by setting the table's selection in the session state, as
Streamlit's frontend does; each run then draws the rows in `ids`."""

from typing import Any

from streamlit.testing.v1 import AppTest


def _table_app() -> None:
    import streamlit as st

    from dashboard.ui import selectable_table

    ids = st.session_state.get("ids", ["a", "b", "c"])
    new = selectable_table([{"id": i} for i in ids], ids, key="tbl", chosen="chosen")
    st.markdown(f"chosen={st.session_state.get('chosen')} new={new}")


def _click(at: AppTest, row: int | None) -> None:
    rows = [] if row is None else [row]
    at.session_state["tbl"] = {"selection": {"rows": rows, "columns": [], "cells": []}}


def _shown(at: AppTest) -> str:
    return str(at.markdown[-1].value)


def _drawn(at: AppTest) -> list[Any]:
    return list(at.session_state["tbl"]["selection"]["rows"])


def _started() -> AppTest:
    at = AppTest.from_function(_table_app)
    at.run()
    assert _shown(at) == "chosen=None new=False"
    return at


def test_the_pick_follows_its_record_while_rows_move_and_lets_go_when_it_leaves() -> None:
    at = _started()
    _click(at, 1)
    at.run()
    assert (_shown(at), _drawn(at)) == ("chosen=b new=True", [1])

    # A new row arrives on top: "b" is now the third row, and the tick moves with it.
    at.session_state["ids"] = ["z", "a", "b", "c"]
    at.run()
    assert (_shown(at), _drawn(at)) == ("chosen=b new=False", [2])

    # "b" leaves: nothing is shown as picked, and nothing else is picked in its place.
    at.session_state["ids"] = ["z", "a", "c"]
    at.run()
    assert (_shown(at), _drawn(at)) == ("chosen=b new=False", [])


def test_a_click_is_read_against_the_rows_the_user_saw() -> None:
    at = _started()
    # The user clicks the first row of a, b, c; by the run that reads the click, z has
    # arrived on top.
    _click(at, 0)
    at.session_state["ids"] = ["z", "a", "b", "c"]
    at.run()
    assert (_shown(at), _drawn(at)) == ("chosen=a new=True", [1])


def test_another_row_is_a_new_pick_and_unticking_lets_go() -> None:
    at = _started()
    _click(at, 0)
    at.run()
    _click(at, 2)
    at.run()
    assert (_shown(at), _drawn(at)) == ("chosen=c new=True", [2])

    _click(at, None)
    at.run()
    assert (_shown(at), _drawn(at)) == ("chosen=None new=False", [])


def test_a_table_drawn_again_after_another_page_keeps_its_pick() -> None:
    at = _started()
    _click(at, 1)
    at.run()
    # Another page ran: Streamlit dropped the table's own state, not the pick.
    del at.session_state["tbl"]
    at.run()
    assert (_shown(at), _drawn(at)) == ("chosen=b new=False", [1])
