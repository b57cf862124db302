"""The reconciliation API over real HTTP: runs against lineage and the sandbox ERP, mismatch
filters, totals and CSV, resolution by finance, and the error shape."""

import csv
import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.main import create_app
from api.routes.reconciliation import router
from api.settings import ApiSettings
from lineage.clock import utc_now
from lineage.enums import Role, System, TxState
from lineage.models import AuditLog, BusinessTransaction, ExternalRef
from reconciliation import repository
from reconciliation.engine import Tolerance, reconcile
from reconciliation.settings import ReconciliationSettings
from tests.api.helpers import auth
from tests.reconciliation.world import PERIOD, clean_world
from tests.support.servers import serve_in_thread

SM = async_sessionmaker[AsyncSession]


@pytest.fixture
def recon_url(api_settings: ApiSettings, sandbox_url: str, tmp_path: Path) -> Iterator[str]:
    app = create_app(api_settings)
    app.include_router(router)
    app.state.reconciliation_settings = ReconciliationSettings(
        database_url=api_settings.database_url,
        reconciliation_dir=tmp_path / "runs",
        reconciliation_erp_url=f"{sandbox_url}/erp",
    )
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture
async def api(recon_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=recon_url, timeout=30) as http:
        yield http


def _erp_invoice(sandbox_url: str, invoice_id: str, amount: float) -> str:
    response = httpx.put(
        f"{sandbox_url}/erp/record/v1/invoice/eid:{invoice_id}",
        json={
            "entity": {"externalId": "cus_1"},
            "currency": {"refName": "USD"},
            "tranDate": f"{PERIOD}-05",
            "item": {"items": [{"amount": amount}]},
        },
    )
    assert response.status_code == 204, response.text
    return response.headers["Location"].rsplit("/", 1)[1]


async def _posted(sessionmaker: SM, invoice_id: str, erp_record_id: str) -> str:
    correlation_id = f"cid-{invoice_id}"
    async with sessionmaker.begin() as session:
        session.add(
            BusinessTransaction(
                correlation_id=correlation_id,
                workflow="invoice_generated",
                state=TxState.POSTED,
                source_system=System.BILLING,
                event_type="invoice.finalized",
                invoice_id=invoice_id,
                amount_minor=12_500,
                currency="USD",
                period=PERIOD,
                received_at=utc_now(),
                updated_at=utc_now(),
            )
        )
        await session.flush()
        session.add(
            ExternalRef(
                correlation_id=correlation_id,
                system=System.ERP,
                object_type="invoice",
                external_id=erp_record_id,
                created_at=utc_now(),
            )
        )
    return correlation_id


async def test_a_run_finds_what_lineage_posted_and_the_erp_lacks_then_auto_resolves_it(
    api: httpx.AsyncClient, api_keys: dict[Role, str], sessionmaker: SM, sandbox_url: str
) -> None:
    finance = auth(api_keys[Role.FINANCE])
    held = _erp_invoice(sandbox_url, "in_held", 125.0)
    await _posted(sessionmaker, "in_held", held)
    gone_cid = await _posted(sessionmaker, "in_gone", "4040")

    created = await api.post("/v1/reconciliation/runs", json={"period": PERIOD}, headers=finance)
    assert created.status_code == 201, created.text
    run = created.json()
    assert (run["state"], run["progress"], run["found_count"]) == ("succeeded", 100, 1)
    assert run["input_rows"]["lineage_postings"] == 2
    assert run["input_rows"]["erp_invoices"] == 1
    # Without a billing snapshot, kinds that need billing are not evaluated.
    assert "missing_in_erp" not in run["kinds_evaluated"]
    assert run["summary"]["posted_but_missing"] == {"count": 1, "amount_minor": {"USD": 12_500}}
    viewer = auth(api_keys[Role.VIEWER])
    again = await api.get(f"/v1/reconciliation/runs/{run['id']}", headers=viewer)
    assert again.json() == run

    page = (await api.get("/v1/mismatches", headers=viewer)).json()
    [mismatch] = page["items"]
    assert mismatch["kind"] == "posted_but_missing"
    assert mismatch["correlation_ids"] == [gone_cid]
    assert mismatch["target_id"] == "4040"
    assert page["totals"] == [{"currency": "USD", "count": 1, "amount_at_risk_minor": 12_500}]

    # The fix lands in the ERP; the next run no longer finds the difference.
    _erp_invoice(sandbox_url, "in_gone", 125.0)
    second = (
        await api.post("/v1/reconciliation/runs", json={"period": PERIOD}, headers=finance)
    ).json()
    assert (second["found_count"], second["auto_resolved_count"]) == (0, 1)
    after = (await api.get(f"/v1/mismatches/{mismatch['id']}", headers=viewer)).json()
    assert (after["status"], after["resolved_run_id"]) == ("auto_resolved", second["id"])


async def test_only_finance_and_admin_run_and_errors_have_the_shape(
    api: httpx.AsyncClient, api_keys: dict[Role, str]
) -> None:
    for role in (Role.VIEWER, Role.OPS, Role.INGEST):
        denied = await api.post(
            "/v1/reconciliation/runs", json={"period": PERIOD}, headers=auth(api_keys[role])
        )
        assert denied.status_code == 403
        assert denied.json()["error"]["code"] == "forbidden"
    bad = await api.post(
        "/v1/reconciliation/runs", json={"period": "2026-13"}, headers=auth(api_keys[Role.FINANCE])
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_request"
    missing = await api.get("/v1/reconciliation/runs/999", headers=auth(api_keys[Role.VIEWER]))
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "code": "not_found",
        "message": "reconciliation run 999 does not exist",
        "details": {},
    }


async def _seed(sessionmaker: SM) -> None:
    """Mismatches of several kinds and currencies, recorded by a real run of the engine."""
    world = clean_world()
    world.drop("erp_invoices", external_id="in_usd_open")
    world.row("lineage_postings", invoice_id="in_usd_open").update(state="exception")
    world.row("erp_invoices", external_id="in_jpy_open")["amount_minor"] = 1_600
    world.row("erp_invoices", external_id="in_kwd_open")["amount_minor"] = 12_300
    world.row("crm_deals", deal_id="deal_sub_usd")["amount_minor"] = 100_000
    result = reconcile(world.arrow(), period=PERIOD, tolerance=Tolerance())
    async with sessionmaker.begin() as session:
        run = await repository.start_run(
            session,
            period=PERIOD,
            trigger="test",
            requested_by=None,
            tolerance_minor=0,
            now=utc_now(),
        )
        await repository.apply_findings(
            session,
            run=run,
            findings=result.findings.to_pylist(),
            kinds_evaluated=[k.value for k in result.kinds_evaluated],
            now=utc_now(),
        )
        run.state = "succeeded"


async def test_mismatches_filter_total_page_and_export(
    api: httpx.AsyncClient, api_keys: dict[Role, str], sessionmaker: SM
) -> None:
    await _seed(sessionmaker)
    viewer = auth(api_keys[Role.VIEWER])

    async def get(**params: str | int) -> dict[str, Any]:
        response = await api.get("/v1/mismatches", params=params, headers=viewer)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    everything = await get()
    assert sorted(i["kind"] for i in everything["items"]) == [
        "amount_mismatch",
        "amount_mismatch",
        "crm_contract_value_mismatch",
        "missing_in_erp",
    ]
    assert everything["totals"] == [
        {"currency": "JPY", "count": 1, "amount_at_risk_minor": 100},
        {"currency": "KWD", "count": 1, "amount_at_risk_minor": 45},
        {"currency": "USD", "count": 2, "amount_at_risk_minor": 30_000},
    ]
    crm = await get(system="crm")
    assert [i["kind"] for i in crm["items"]] == ["crm_contract_value_mismatch"]
    big = await get(min_amount_minor=101)
    assert {i["currency"] for i in big["items"]} == {"USD"}
    jpy = await get(kind="amount_mismatch", currency="jpy")
    assert [(i["source_amount_minor"], i["target_amount_minor"]) for i in jpy["items"]] == [
        (1_500, 1_600)
    ]
    first = await get(limit=3)
    assert len(first["items"]) == 3
    rest = await get(limit=3, cursor=first["next_cursor"])
    assert len(rest["items"]) == 1
    assert rest["next_cursor"] is None
    assert rest["totals"] == everything["totals"]
    bad_cursor = await api.get("/v1/mismatches", params={"cursor": "nope"}, headers=viewer)
    assert bad_cursor.json()["error"]["code"] == "invalid_cursor"

    exported = await api.get("/v1/mismatches", params={"format": "csv"}, headers=viewer)
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == 4
    missing = next(r for r in rows if r["kind"] == "missing_in_erp")
    assert (missing["amount_at_risk_minor"], missing["currency"]) == ("10000", "USD")
    assert missing["refs"] == "billing:invoice:in_usd_open"


async def test_finance_resolves_a_mismatch_with_a_note_once(
    api: httpx.AsyncClient, api_keys: dict[Role, str], sessionmaker: SM
) -> None:
    await _seed(sessionmaker)
    finance = auth(api_keys[Role.FINANCE])
    page = (
        await api.get("/v1/mismatches", params={"kind": "missing_in_erp"}, headers=finance)
    ).json()
    mismatch_id = page["items"][0]["id"]
    url = f"/v1/mismatches/{mismatch_id}/resolve"

    no_note = await api.post(url, json={"note": "  "}, headers=finance)
    assert no_note.status_code == 422
    as_ops = await api.post(url, json={"note": "fine"}, headers=auth(api_keys[Role.OPS]))
    assert as_ops.status_code == 403
    done = await api.post(url, json={"note": "voided in billing after the run"}, headers=finance)
    assert done.status_code == 200, done.text
    body = done.json()
    assert (body["status"], body["resolved_by"], body["resolution_note"]) == (
        "resolved",
        "test-finance",
        "voided in billing after the run",
    )
    twice = await api.post(url, json={"note": "again"}, headers=finance)
    assert twice.status_code == 409
    assert twice.json()["error"]["details"] == {"status": "resolved"}
    unknown = await api.post("/v1/mismatches/99999/resolve", json={"note": "x"}, headers=finance)
    assert unknown.status_code == 404
    open_now = (await api.get("/v1/mismatches", params={"status": "open"}, headers=finance)).json()
    assert mismatch_id not in [i["id"] for i in open_now["items"]]

    async with sessionmaker() as session:
        actions = list(
            await session.scalars(
                select(AuditLog.outcome).where(AuditLog.action == "mismatch.resolve")
            )
        )
    # The blank note, the second resolution and the unknown id: refused and audited.
    assert sorted(actions) == ["rejected", "rejected", "rejected", "succeeded"]


async def test_ops_replays_the_transaction_a_mismatch_links_to(
    api: httpx.AsyncClient, api_keys: dict[Role, str], sessionmaker: SM
) -> None:
    gone_cid = await _posted(sessionmaker, "in_gone", "4040")
    finance, ops = auth(api_keys[Role.FINANCE]), auth(api_keys[Role.OPS])
    run = await api.post("/v1/reconciliation/runs", json={"period": PERIOD}, headers=finance)
    [mismatch] = (await api.get("/v1/mismatches", headers=finance)).json()["items"]
    assert (run.status_code, mismatch["kind"]) == (201, "posted_but_missing")
    url = f"/v1/mismatches/{mismatch['id']}/replay"

    for role in (Role.VIEWER, Role.EXECUTIVE):
        denied = await api.post(url, json={"reason": "x"}, headers=auth(api_keys[role]))
        assert denied.status_code == 403, role
    no_reason = await api.post(url, json={"reason": " "}, headers=ops)
    assert no_reason.status_code == 422
    started = await api.post(url, json={"reason": "the ERP lost it"}, headers=ops)
    assert started.status_code == 202, started.text
    body = started.json()
    [replay] = body["replays"]
    assert (replay["correlation_id"], replay["state"]) == (gone_cid, "pending")
    assert body["mismatch"]["status"] == "open"
    assert body["mismatch"]["last_replay_by"] == "test-ops"
    assert body["mismatch"]["last_replay_runs"] == [
        {"correlation_id": gone_cid, "run_number": replay["run_number"]}
    ]
    # The same safety checks as a direct replay: a transaction already running is not taken.
    again = await api.post(url, json={"reason": "again"}, headers=ops)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "transaction_busy"
    read = (await api.get(f"/v1/mismatches/{mismatch['id']}", headers=finance)).json()
    assert read["last_replay_runs"] == body["mismatch"]["last_replay_runs"]

    async with sessionmaker() as session:
        tx = await session.get(BusinessTransaction, gone_cid)
        assert tx is not None
        assert tx.state == TxState.PENDING
        audited = sorted(
            (a.action, a.outcome)
            for a in await session.scalars(
                select(AuditLog).where(
                    AuditLog.action.in_(["mismatch.replay", "transaction.replay"])
                )
            )
        )
    # The refusals (no reason, busy) are audited; the busy attempt's own replay row rolled back.
    assert audited == [
        ("mismatch.replay", "rejected"),
        ("mismatch.replay", "rejected"),
        ("mismatch.replay", "succeeded"),
        ("transaction.replay", "succeeded"),
    ]


async def test_a_mismatch_without_a_transaction_or_not_open_cannot_be_replayed(
    api: httpx.AsyncClient, api_keys: dict[Role, str], sessionmaker: SM
) -> None:
    await _seed(sessionmaker)
    ops = auth(api_keys[Role.OPS])
    items = (await api.get("/v1/mismatches", headers=ops)).json()["items"]
    crm = next(i for i in items if i["kind"] == "crm_contract_value_mismatch")

    unlinked = await api.post(
        f"/v1/mismatches/{crm['id']}/replay", json={"reason": "x"}, headers=ops
    )
    assert unlinked.status_code == 409
    assert unlinked.json()["error"]["code"] == "mismatch_not_linked"
    resolved = await api.post(
        f"/v1/mismatches/{crm['id']}/resolve",
        json={"note": "deal corrected"},
        headers=auth(api_keys[Role.FINANCE]),
    )
    assert resolved.status_code == 200
    closed = await api.post(f"/v1/mismatches/{crm['id']}/replay", json={"reason": "x"}, headers=ops)
    assert closed.status_code == 409
    assert closed.json()["error"] == {
        "code": "mismatch_not_open",
        "message": f"mismatch {crm['id']} is resolved, not open",
        "details": {"status": "resolved"},
    }
    unknown = await api.post("/v1/mismatches/99999/replay", json={"reason": "x"}, headers=ops)
    assert unknown.status_code == 404
