"""Every page for every role, in Streamlit's AppTest, against a real API over HTTP.

Controls are checked by their effect through the API (transaction state, the audit log), so
the test proves the dashboard called the right endpoint with the signed-in user's key.
"""

from pathlib import Path
from typing import Any

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from lineage.enums import Role
from tests.dashboard.conftest import Seeded, auth

APP = Path(__file__).parents[2] / "dashboard" / "app.py"
READERS = [Role.VIEWER, Role.EXECUTIVE, Role.FINANCE, Role.OPS, Role.ADMIN]
PAGES = ["sla", "operations", "transactions", "exceptions", "reconciliation"]


def signed_in(seeded: Seeded, role: Role, **state: Any) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.session_state["auth_api_url"] = seeded.api_url
    at.session_state["auth_token"] = seeded.keys[role]
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def page(at: AppTest, name: str) -> AppTest:
    return at.switch_page(f"app_pages/{name}.py").run()


def text_of(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [m.value for m in at.caption]
    parts += [f"{m.label}: {m.value}" for m in at.metric] + [m.value for m in at.title]
    parts += (
        [e.value for e in at.error] + [e.value for e in at.info] + [s.value for s in at.success]
    )
    return "\n".join(str(p) for p in parts)


def keys_of(at: AppTest) -> set[str]:
    return {w.key for w in (*at.button, *at.text_input, *at.text_area) if w.key}


def exception_id(seeded: Seeded) -> int:
    body = httpx.get(
        f"{seeded.api_url}/v1/exceptions", headers=auth(seeded.keys[Role.VIEWER])
    ).json()
    [item] = [i for i in body["items"] if i["correlation_id"] == seeded.failed]
    return int(item["id"])


def audit(seeded: Seeded, action: str) -> list[dict[str, Any]]:
    """Successful calls only: role probing at sign-in leaves refused rows too (until GET /v1/me)."""
    body = httpx.get(
        f"{seeded.api_url}/v1/audit",
        params={"action": action, "outcome": "succeeded"},
        headers=auth(seeded.keys[Role.ADMIN]),
    ).json()
    return list(body["items"])


def tx(seeded: Seeded, cid: str) -> dict[str, Any]:
    body = httpx.get(
        f"{seeded.api_url}/v1/transactions/{cid}", headers=auth(seeded.keys[Role.VIEWER])
    )
    return dict(body.json())


def test_sign_in_with_a_key_shows_the_role_and_a_bad_key_is_refused(seeded: Seeded) -> None:
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.session_state["auth_api_url"] = seeded.api_url
    at.run()
    at.text_input(key="signin_key").input("ck_not_a_key")
    at.button[0].click().run()
    assert "invalid_api_key" in text_of(at)

    at.text_input(key="signin_key").input(seeded.keys[Role.OPS])
    at.button[0].click().run()

    assert not at.exception
    sidebar = "\n".join(m.value for m in at.sidebar.markdown)
    assert "Ops" in sidebar
    # Ops lands on the exception queue.
    assert any(t.value == "Exceptions" for t in at.title)


@pytest.mark.parametrize("role", READERS)
def test_every_page_renders_for_each_role_with_the_right_controls(
    seeded: Seeded, role: Role
) -> None:
    at = signed_in(seeded, role, exc_selected=exception_id(seeded))
    assert not at.exception
    for name in PAGES:
        page(at, name)
        assert not at.exception, (name, at.exception)
        if name == "exceptions":
            operator = role in (Role.OPS, Role.ADMIN)
            assert ("exc_replay_go" in keys_of(at)) is operator
            assert ("exc_bulk_preview_go" in keys_of(at)) is operator
            assert ("exc_assign_go" in keys_of(at)) is operator
        if name == "sla":
            assert "SLA attainment" in text_of(at)
    # The audit page is registered for admins only.
    if role is Role.ADMIN:
        page(at, "audit")
        assert not at.exception
        assert "Audit log" in text_of(at)
    else:
        with pytest.raises(ValueError, match="registered"):
            at.switch_page("app_pages/audit.py")


def test_an_ingest_key_sees_only_the_no_access_page(seeded: Seeded) -> None:
    at = signed_in(seeded, Role.INGEST)

    assert not at.exception
    assert "No dashboard access" in text_of(at)


def test_ops_replays_an_exception_with_its_reason_under_its_own_key(seeded: Seeded) -> None:
    at = page(signed_in(seeded, Role.OPS, exc_selected=exception_id(seeded)), "exceptions")
    assert at.button(key="exc_replay_go").disabled  # no reason yet

    at.text_input(key="exc_replay_reason").input("ERP back up after the outage").run()
    at.button(key="exc_replay_go").click().run()

    assert not at.exception
    assert "Replay started: run 2" in text_of(at)
    assert tx(seeded, seeded.failed)["run_count"] == 2
    [row] = audit(seeded, "transaction.replay")
    assert (row["actor"], row["role"], row["target"]) == ("test-ops", "ops", seeded.failed)
    assert row["reason"] == "ERP back up after the outage"


def test_ops_replays_with_an_edited_payload_and_sees_the_diff(seeded: Seeded) -> None:
    at = page(signed_in(seeded, Role.OPS, exc_selected=exception_id(seeded)), "exceptions")
    at.toggle(key="exc_replay_edit").set_value(True).run()
    [area] = [a for a in at.text_area if a.key and a.key.startswith("exc_replay_payload_")]
    area.input(str(area.value).replace('"amount_minor": ', '"amount_minor": 1'))
    at.text_input(key="exc_replay_reason").input("amount corrected")
    at.run()
    assert any("amount_minor" in c.value for c in at.code)

    at.button(key="exc_replay_go").click().run()

    assert not at.exception, at.exception
    [row] = audit(seeded, "transaction.replay")
    assert row["detail"]["payload_diff"][0]["path"] == "/amount_minor"


def test_ops_resolves_with_a_note(seeded: Seeded) -> None:
    at = page(signed_in(seeded, Role.OPS, exc_selected=exception_id(seeded)), "exceptions")

    at.text_area(key="exc_resolve_note").input("posted by hand as INV-204")
    at.selectbox(key="exc_resolve_resolution").set_value("posted_by_hand")
    [submit] = [b for b in at.button if b.label == "Resolve"]
    submit.click().run()

    assert not at.exception
    assert tx(seeded, seeded.failed)["state"] == "manually_resolved"
    [row] = audit(seeded, "transaction.resolve")
    assert row["actor"] == "test-ops"


def test_ops_assigns_an_exception_to_themselves(seeded: Seeded) -> None:
    at = page(signed_in(seeded, Role.OPS, exc_selected=exception_id(seeded)), "exceptions")

    at.text_input(key="exc_assign_owner").input("alice")
    at.button(key="exc_assign_go").click().run()

    assert not at.exception
    [row] = audit(seeded, "exception.assign")
    assert (row["actor"], row["after_state"]) == ("test-ops", {"owner": "alice"})


def test_ops_bulk_replay_previews_then_starts_only_after_confirmation(seeded: Seeded) -> None:
    at = page(signed_in(seeded, Role.OPS), "exceptions")

    at.button(key="exc_bulk_preview_go").click().run()
    assert "Would replay" in [m.label for m in at.metric]
    assert at.button(key="exc_bulk_go").disabled
    at.text_input(key="exc_bulk_reason").input("ERP outage over")
    at.checkbox(key="exc_bulk_confirm").check()
    at.run()
    at.button(key="exc_bulk_go").click().run()

    assert not at.exception, at.exception
    jobs = httpx.get(f"{seeded.api_url}/v1/replays", headers=auth(seeded.keys[Role.VIEWER])).json()
    [job] = jobs
    assert (job["requested_by"], job["expected_count"], job["reason"]) == (
        "test-ops",
        1,
        "ERP outage over",
    )
    assert at.session_state["exc_bulk_job"] == job["id"]


def test_search_by_invoice_opens_the_transaction_with_its_timeline(seeded: Seeded) -> None:
    at = page(signed_in(seeded, Role.VIEWER), "transactions")

    at.text_input(key="tx_query").input(seeded.failed_invoice).run()

    assert not at.exception
    assert at.session_state["tx_selected"] == seeded.failed
    assert "Exception" in text_of(at)
    # The ERP connection error is explained in words, not as a dump.
    assert "connect" in text_of(at).lower()


def test_admin_sees_the_audit_trail_of_a_transaction(seeded: Seeded) -> None:
    at = page(signed_in(seeded, Role.ADMIN, tx_selected=seeded.failed), "transactions")

    assert not at.exception
    assert "audit trail is visible to admins" not in text_of(at)
