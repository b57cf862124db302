"""The reconciliation page's replay control: for ops and admins only, a reason required, and the
replay started through the API under the signed-in key."""

import time
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dashboard.format import RUN_STAGES, finished_message
from lineage.clock import utc_now
from lineage.enums import Role
from reconciliation import repository
from reconciliation.engine import reconcile
from tests.dashboard.conftest import Seeded
from tests.dashboard.test_pages import audit, keys_of, page, signed_in, text_of, tx
from tests.reconciliation.world import PERIOD, clean_world


async def _mismatch_of(seeded: Seeded, sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """A run that finds the exception transaction's invoice missing in the ERP; its id."""
    world = clean_world()
    world.drop("erp_invoices", external_id="in_usd_open")
    world.row("lineage_postings", invoice_id="in_usd_open").update(
        correlation_id=seeded.failed, state="exception"
    )
    result = reconcile(world.arrow(), period=PERIOD)
    async with sessionmaker.begin() as session:
        run = await repository.start_run(
            session, period=PERIOD, trigger="test", requested_by=None, tolerance_minor=0,
            now=utc_now(),
        )  # fmt: skip
        await repository.apply_findings(
            session,
            run=run,
            findings=result.findings.to_pylist(),
            kinds_evaluated=[k.value for k in result.kinds_evaluated],
            now=utc_now(),
        )
        run.state = "succeeded"
    async with sessionmaker() as session:
        rows, _ = await repository.list_mismatches(
            session, repository.MismatchFilter(kind="missing_in_erp"), limit=None
        )
    [mismatch] = rows
    assert mismatch.correlation_ids == [seeded.failed]
    return mismatch.id


@pytest.mark.parametrize("role", [Role.OPS, Role.FINANCE])
async def test_ops_or_finance_replays_from_a_mismatch_with_a_reason(
    seeded: Seeded, sessionmaker: async_sessionmaker[AsyncSession], role: Role
) -> None:
    mismatch_id = await _mismatch_of(seeded, sessionmaker)
    at = page(signed_in(seeded, role, recon_selected=mismatch_id), "reconciliation")
    assert not at.exception
    assert at.button(key="recon_replay_go").disabled  # no reason yet

    at.text_input(key="recon_replay_reason").input("ERP was down when it posted").run()
    at.button(key="recon_replay_go").click().run()

    assert not at.exception
    assert f"Replay started: {seeded.failed} (run 2)" in text_of(at)
    assert tx(seeded, seeded.failed)["run_count"] == 2
    [row] = audit(seeded, "mismatch.replay")
    assert (row["actor"], row["role"], row["target"]) == (
        f"test-{role.value}",
        role.value,
        f"mismatch:{mismatch_id}",
    )
    assert row["reason"] == "ERP was down when it posted"


@pytest.mark.parametrize("role", [Role.VIEWER, Role.EXECUTIVE])
async def test_roles_that_may_not_replay_see_no_replay_control(
    seeded: Seeded, sessionmaker: async_sessionmaker[AsyncSession], role: Role
) -> None:
    mismatch_id = await _mismatch_of(seeded, sessionmaker)
    at = page(signed_in(seeded, role, recon_selected=mismatch_id), "reconciliation")

    assert not at.exception
    assert "Missing in ERP" in text_of(at)  # the drill-down is open
    assert "recon_replay_go" not in keys_of(at)


async def test_a_run_started_from_the_page_is_in_its_runs_table_at_once(seeded: Seeded) -> None:
    at = page(signed_in(seeded, Role.FINANCE), "reconciliation")
    assert "No reconciliation runs yet" in text_of(at)

    at.text_input(key="recon_period").input(PERIOD)
    [start] = [b for b in at.button if b.label == "Start reconciliation"]
    start.click().run()

    assert not at.exception
    [run] = audit(seeded, "reconciliation.run")
    run_id = int(run["target"].removeprefix("reconciliation_run:"))
    [table] = [d for d in at.dataframe if "Run" in d.value.columns]
    assert list(table.value["Run"]) == [run_id]
    assert list(table.value["Period"]) == [PERIOD]
    assert "No reconciliation runs yet" not in text_of(at)
    # Followed (the browser polls every 2 s; here each run of the page is one poll) until it
    # has finished, then said once.
    deadline = time.monotonic() + 20
    while "recon_following" in at.session_state:
        assert time.monotonic() < deadline, text_of(at)
        time.sleep(0.1)
        at.run()
    assert not at.exception
    assert f"Run {run_id} for {PERIOD}: Succeeded, 0 found, 0 new." in text_of(at)
    at.run()
    assert f"Run {run_id} for {PERIOD}" not in text_of(at)


def test_a_running_run_shows_its_stage_and_a_finished_one_its_outcome() -> None:
    running: dict[str, Any] = {"id": 7, "period": PERIOD, "state": "running", "stage": "compare"}
    failed = {"id": 7, "period": PERIOD, "state": "failed", "error": "SourceError: ERP 503"}

    assert RUN_STAGES[running["stage"]] == "comparing"
    assert finished_message(
        {**running, "state": "succeeded", "found_count": 3, "new_count": 1}
    ) == {
        "ok": True,
        "message": f"Run 7 for {PERIOD}: Succeeded, 3 found, 1 new.",
    }
    assert finished_message(failed) == {
        "ok": False,
        "message": f"Run 7 for {PERIOD}: Failed. SourceError: ERP 503",
    }


async def test_the_runs_table_has_the_newest_run_of_each_month_latest_month_first(
    seeded: Seeded, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ids = []
    for period in (PERIOD, "2031-01", PERIOD):
        async with sessionmaker.begin() as session:
            run = await repository.start_run(
                session, period=period, trigger="cron", requested_by=None, tolerance_minor=0,
                now=utc_now(),
            )  # fmt: skip
            run.state = "succeeded"
            ids.append(run.id)

    at = page(signed_in(seeded, Role.VIEWER), "reconciliation")

    assert not at.exception
    [table] = [d for d in at.dataframe if "Run" in d.value.columns]
    assert list(table.value["Period"]) == ["2031-01", PERIOD]
    assert list(table.value["Run"]) == [ids[1], ids[2]]
    assert "The newest run of each of 2 months, from the last 3 runs" in text_of(at)


async def test_finance_resolves_a_mismatch_and_the_open_list_no_longer_shows_it(
    seeded: Seeded, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    mismatch_id = await _mismatch_of(seeded, sessionmaker)
    at = page(signed_in(seeded, Role.FINANCE, recon_selected=mismatch_id), "reconciliation")
    assert "recon_resolve_note" in keys_of(at)

    at.text_area(key="recon_resolve_note").input("ERP posting made by hand as INV-88")
    [resolve] = [b for b in at.button if b.label == "Resolve mismatch"]
    resolve.click().run()

    assert not at.exception
    assert f"Mismatch {mismatch_id} resolved." in text_of(at)
    # The open list (the page's default filter) is drawn again without it, and no other
    # mismatch's drill-down takes its place.
    assert "No mismatches" in text_of(at)
    assert "recon_resolve_note" not in keys_of(at)
    [row] = audit(seeded, "mismatch.resolve")
    assert (row["role"], row["target"]) == ("finance", f"mismatch:{mismatch_id}")
