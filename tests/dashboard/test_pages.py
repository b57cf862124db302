"""Every page for every role, in Streamlit's AppTest, against a real API over HTTP.

Controls are checked by their effect through the API (transaction state, the audit log), so
the test proves the dashboard called the right endpoint with the signed-in user's key.
"""

import asyncio
import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from lineage.enums import Role
from orchestrator.client.queue import enqueue_wakeup, queue_pool
from orchestrator.worker import build_worker
from tests.dashboard.conftest import (
    DEAD_ERP,
    Seeded,
    auth,
    post_invoice,
    run_until_settled,
)

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


def tx(seeded: Seeded, cid: str, *, role: Role = Role.VIEWER) -> dict[str, Any]:
    body = httpx.get(f"{seeded.api_url}/v1/transactions/{cid}", headers=auth(seeded.keys[role]))
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
            assert "figures as of 20" in text_of(at)
    # The audit page is registered for admins only.
    if role is Role.ADMIN:
        page(at, "audit")
        assert not at.exception
        assert "Audit log" in text_of(at)
    else:
        with pytest.raises(ValueError, match="registered"):
            at.switch_page("app_pages/audit.py")


@pytest.mark.parametrize(
    ("role", "asked_for", "told"),
    [
        (Role.VIEWER, "audit", True),
        (Role.ADMIN, "audit", False),
        (Role.VIEWER, "exceptions", False),
    ],
)
def test_a_link_to_a_page_the_role_cannot_open_says_so_after_sign_in(
    seeded: Seeded, role: Role, asked_for: str, told: bool
) -> None:
    # What main() records when a signed-out visitor opens a page's address.
    at = signed_in(seeded, role, auth_asked_for=asked_for)

    assert not at.exception
    notes = [i.value for i in at.info if "The link opened" in str(i.value)]
    assert notes == (["The link opened **Audit log**, which the Viewer role cannot see; this is "
                      "your start page. Ask an admin for a key with that role if you need it."]
                     if told else [])  # fmt: skip
    # Said once: the next rerun shows the page alone.
    at.run()
    assert not [i for i in at.info if "The link opened" in str(i.value)]


def test_the_sla_refresh_button_asks_for_figures_read_after_the_click(seeded: Seeded) -> None:
    def as_of(at: AppTest) -> str:
        [caption] = [c.value for c in at.caption if "figures as of" in str(c.value)]
        return str(caption).rsplit("figures as of ", 1)[1]

    at = page(signed_in(seeded, Role.EXECUTIVE), "sla")
    first = as_of(at)
    time.sleep(1.1)  # the caption shows whole seconds
    # A new session draws the API's shared reading (CONCORD_SLA_MAX_AGE_S, 15 s here)...
    assert as_of(page(signed_in(seeded, Role.VIEWER), "sla")) == first

    # ...and "Refresh now" one read after the click.
    at.button(key="sla_refresh").click().run()

    assert not at.exception
    assert as_of(at) > first


def _requests_answered(seeded: Seeded, route: str = "/v1/sla/summary") -> float:
    """How many GET `route` the API has answered, by its own request histogram."""
    text = httpx.get(f"{seeded.api_url}/metrics").text
    pattern = rf'concord_api_request_duration_seconds_count\{{[^}}]*route="{route}"[^}}]*\}} (\S+)'
    return sum(float(n) for n in re.findall(pattern, text))


def _sla_requests(seeded: Seeded) -> tuple[float, float]:
    return (
        _requests_answered(seeded),
        _requests_answered(seeded, "/v1/sla/timeseries"),
    )


def _sign_in_through_the_form(seeded: Seeded, role: Role) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.session_state["auth_api_url"] = seeded.api_url
    at.run()
    at.text_input(key="signin_key").input(seeded.keys[role])
    return at.button[0].click().run()


def test_signing_in_on_the_sla_page_starts_its_readings_before_the_page_asks(
    seeded: Seeded,
) -> None:
    before = _sla_requests(seeded)
    at = _sign_in_through_the_form(seeded, Role.EXECUTIVE)

    assert not at.exception
    assert any(t.value == "SLA overview" for t in at.title)
    # The page's own two calls, and the two the sign-in started before it (they answer about
    # when the page's do, as both wait for the same readings).
    deadline = time.monotonic() + 10
    while _sla_requests(seeded) != (before[0] + 2, before[1] + 2) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _sla_requests(seeded) == (before[0] + 2, before[1] + 2)

    # A role that opens elsewhere starts none, nor does one that may not read the figures.
    before = _sla_requests(seeded)
    for role in (Role.FINANCE, Role.INGEST):
        assert not _sign_in_through_the_form(seeded, role).exception
    time.sleep(0.5)
    assert _sla_requests(seeded) == before


def test_each_sla_page_run_takes_the_apis_shared_reading_not_a_cached_copy(
    seeded: Seeded,
) -> None:
    at = page(signed_in(seeded, Role.EXECUTIVE), "sla")
    before = _requests_answered(seeded)
    # The 30 s timer's runs: each asks the API, whose reading is at most its max age old.
    at.run()
    at.run()

    assert not at.exception
    assert _requests_answered(seeded) - before == 2


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
    original = tx(seeded, seeded.failed, role=Role.OPS)["canonical"]["input"]
    assert original["lines"], "the fixture invoice has lines for the edit to keep"
    at = page(signed_in(seeded, Role.OPS, exc_selected=exception_id(seeded)), "exceptions")
    at.toggle(key="exc_replay_edit").set_value(True).run()
    [area] = [a for a in at.text_area if a.key and a.key.startswith("exc_replay_payload_")]
    # Prefilled with the whole canonical input, not only the business keys.
    assert json.loads(str(area.value)) == original
    # Keys are sorted: the first amount_minor is the invoice's own, not a line's.
    area.input(str(area.value).replace('"amount_minor": ', '"amount_minor": 1', 1))
    at.text_input(key="exc_replay_reason").input("amount corrected")
    at.run()
    assert any("amount_minor" in c.value for c in at.code)

    at.button(key="exc_replay_go").click().run()

    assert not at.exception, at.exception
    [row] = audit(seeded, "transaction.replay")
    assert [d["path"] for d in row["detail"]["payload_diff"]] == ["/amount_minor"]
    replayed = tx(seeded, seeded.failed, role=Role.OPS)["canonical"]
    assert replayed["latest_run"] == 2
    override = replayed["latest_run_override"]
    assert override["amount_minor"] == int(f"1{original['amount_minor']}")
    # The edited replay keeps the invoice lines (and everything else) of the original input.
    assert override["lines"] == original["lines"]
    assert {k: v for k, v in override.items() if k != "amount_minor"} == {
        k: v for k, v in original.items() if k != "amount_minor"
    }


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
    # Said above a queue drawn again without it, and no other exception opened in its place.
    assert "Resolved as Posted by hand; closed exceptions" in text_of(at)
    assert "The queue is empty" in text_of(at)
    assert "exc_resolve_note" not in keys_of(at)


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
    # Drawn again after the start: the preview and its confirmation are gone.
    assert "Would replay" not in [m.label for m in at.metric]
    assert "exc_bulk_go" not in keys_of(at)

    deadline = time.monotonic() + 20
    while job["state"] in ("pending", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
        job = httpx.get(f"{seeded.api_url}/v1/replays/{job['id']}",
                        headers=auth(seeded.keys[Role.VIEWER])).json()  # fmt: skip
    at.run()

    # Seen finished once: the page is drawn again around it and the progress stops polling.
    assert not at.exception, at.exception
    assert at.session_state["exc_bulk_finished"] == job["id"]
    assert "exc_bulk_cancel" not in keys_of(at)


def test_ops_bulk_replay_takes_the_previewed_set_when_more_fail_meanwhile(
    seeded: Seeded,
) -> None:
    async def received() -> str:
        async with httpx.AsyncClient(base_url=seeded.api_url) as client:
            cid, _ = await post_invoice(client)
            return cid

    async def fail(cid: str) -> str:
        dead = seeded.worker.model_copy(update={"erp_url": DEAD_ERP, "max_attempts": 1})
        async with httpx.AsyncClient(base_url=seeded.api_url) as client:
            return await run_until_settled(client, dead, cid, key=seeded.keys[Role.VIEWER])

    # Received before the dry run, failed after it, while the user types the reason and
    # confirms (a retry running out), and then one received and failed after it.
    later = asyncio.run(received())
    at = page(signed_in(seeded, Role.OPS), "exceptions")
    at.button(key="exc_bulk_preview_go").click().run()
    assert {m.label: m.value for m in at.metric}["Would replay"] == "1"
    assert asyncio.run(fail(later)) == "exception"
    newer = asyncio.run(received())
    assert asyncio.run(fail(newer)) == "exception"
    at.text_input(key="exc_bulk_reason").input("ERP outage over")
    at.checkbox(key="exc_bulk_confirm").check()
    at.run()
    at.button(key="exc_bulk_go").click().run()

    # Started with the set the user saw (no "count_mismatch" refusal), and only that set.
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    [job] = httpx.get(f"{seeded.api_url}/v1/replays", headers=auth(seeded.keys[Role.VIEWER])).json()
    detail = httpx.get(f"{seeded.api_url}/v1/replays/{job['id']}",
                       headers=auth(seeded.keys[Role.VIEWER])).json()  # fmt: skip
    assert [i["correlation_id"] for i in detail["items"]] == [seeded.failed]
    assert (tx(seeded, later)["run_count"], tx(seeded, newer)["run_count"]) == (1, 1)

    # A new dry run counts the two that failed since, and asks for a new confirmation.
    at.button(key="exc_bulk_preview_go").click().run()
    assert {m.label: m.value for m in at.metric}["Would replay"] == "2"
    assert not at.checkbox(key="exc_bulk_confirm").value


def test_search_by_invoice_opens_the_transaction_with_its_timeline(seeded: Seeded) -> None:
    at = page(signed_in(seeded, Role.VIEWER), "transactions")

    at.text_input(key="tx_query").input(seeded.failed_invoice).run()

    assert not at.exception
    assert at.session_state["tx_selected"] == seeded.failed
    assert "Exception" in text_of(at)
    # The ERP connection error is explained in words, not as a dump, and as something to act
    # on (an error), not something to wait for; the time shown is to the exception.
    assert any("connect" in str(e.value).lower() for e in at.error)
    assert not any("connect" in str(i.value).lower() for i in at.info)
    assert "To exception" in {m.label for m in at.metric}


def test_admin_sees_the_audit_trail_of_a_transaction(seeded: Seeded) -> None:
    at = page(signed_in(seeded, Role.ADMIN, tx_selected=seeded.failed), "transactions")

    assert not at.exception
    assert "audit trail is visible to admins" not in text_of(at)


def metrics_of(at: AppTest) -> dict[str, str]:
    return {str(m.label): str(m.value) for m in at.metric}


async def test_operations_shows_the_queue_a_live_worker_and_the_last_sweep(
    seeded: Seeded, redis_url: str
) -> None:
    # A live worker's heartbeat: run a burst worker's main() and render before closing it,
    # since arq deletes the health-check key when a worker closes (tests.workers.run_burst).
    worker = build_worker(seeded.worker, burst=True, handle_signals=False, poll_delay=0.02)
    redis = queue_pool(redis_url)
    try:
        await worker.main()
        # One wake-up deferred an hour: the queue tiles must show it as deferred, not ready.
        later = datetime.now(UTC) + timedelta(hours=1)
        assert await enqueue_wakeup(redis, seeded.posted, defer_until=later, due="later")
        at = page(signed_in(seeded, Role.VIEWER), "operations")
    finally:
        await redis.aclose()
        await worker.close()

    assert not at.exception, at.exception
    tiles = metrics_of(at)
    assert (tiles["Queue depth"], tiles["Ready now"], tiles["Deferred"]) == ("1", "0", "1")
    assert tiles["Last worker heartbeat"].endswith(" ago"), tiles
    assert tiles["Sweeper last run"].endswith(" ago"), tiles
    # Every burst the seeding ran swept at start-up: the last one found nothing stale.
    assert (tiles["Stale found"], tiles["Re-queued"]) == ("0", "0")
    [table] = [d for d in at.dataframe if "Health key" in d.value.columns]
    [row] = table.value.to_dict("records")
    assert row["Health key"] == "concord:queue:health-check"
    assert row["Last heartbeat"].endswith(" ago")
    assert row["Completed"] >= 0
    assert "No worker reported" not in text_of(at)


def test_operations_says_no_worker_reported_when_none_runs(seeded: Seeded) -> None:
    at = page(signed_in(seeded, Role.OPS), "operations")

    assert not at.exception, at.exception
    tiles = metrics_of(at)
    assert tiles["Queue depth"] == "0"
    assert tiles["Last worker heartbeat"] == "No worker reported"
    # The seeding's burst workers swept at start-up, and the record outlives them.
    assert tiles["Sweeper last run"].endswith(" ago"), tiles
    assert "No worker reported" in text_of(at)


@pytest.mark.parametrize("name", ["transactions", "exceptions"])
def test_tables_name_workflows_in_words(seeded: Seeded, name: str) -> None:
    at = page(signed_in(seeded, Role.OPS), name)

    assert not at.exception
    workflows = {w for table in at.dataframe for w in table.value.get("Workflow", [])}
    # The seeded failure is an invoice_generated transaction.
    assert "Invoice generated" in workflows
    assert not any("_" in w for w in workflows), workflows
