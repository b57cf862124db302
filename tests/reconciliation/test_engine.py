"""Every mismatch kind from one planted difference, and nothing else; clean data finds nothing."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reconciliation.engine import SnapshotError, Tolerance, reconcile
from reconciliation.snapshots import FINDING_COLUMNS, Kind
from tests.reconciliation.world import PERIOD, World, clean_world

# Two cents either way is rounding in USD (and KWD); JPY has no cents, so any yen is a mismatch.
TOLERANCE = Tolerance(default_minor=2, by_currency={"JPY": 0})


def _run(world: World, **kwargs: Any) -> list[dict[str, Any]]:
    result = reconcile(world.arrow(), period=PERIOD, tolerance=TOLERANCE, **kwargs)
    rows: list[dict[str, Any]] = result.findings.to_pylist()
    return rows


def _subset(finding: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    return {k: finding[k] for k in expected}


@dataclass(frozen=True)
class Case:
    name: str
    plant: Callable[[World], None]
    expected: list[dict[str, Any]]


def _set(table: str, match: dict[str, Any], **values: Any) -> Callable[[World], None]:
    return lambda w: w.row(table, **match).update(values)


def _drop_erp(invoice_id: str) -> Callable[[World], None]:
    return lambda w: w.drop("erp_invoices", external_id=invoice_id)


def _not_posted(w: World) -> None:
    w.drop("erp_invoices", external_id="in_usd_open")
    w.row("lineage_postings", invoice_id="in_usd_open").update(
        state="exception", erp_record_id=None
    )


def _credit(invoice_id: str, amount: int, erp_status: str | None = None) -> Callable[[World], None]:
    def plant(w: World) -> None:
        w.tables["billing_credit_notes"].append(
            {
                "credit_note_id": f"cn_{invoice_id}",
                "invoice_id": invoice_id,
                "amount_minor": amount,
                "currency": w.row("billing_invoices", invoice_id=invoice_id)["currency"],
                "period": PERIOD,
            }
        )
        if erp_status is not None:
            w.row("erp_invoices", external_id=invoice_id)["status"] = erp_status

    return plant


def _orphan(w: World) -> None:
    w.tables["erp_invoices"].append(
        {
            "record_id": "999",
            "external_id": "in_nobody",
            "amount_minor": 4_200,
            "currency": "USD",
            "status": "open",
            "period": PERIOD,
        }
    )


def _copy_in_erp(external_id: str | None, record_id: str) -> Callable[[World], None]:
    def plant(w: World) -> None:
        w.tables["erp_invoices"].append(
            {**w.row("erp_invoices", external_id="in_usd_open"), "record_id": record_id}
            | {"external_id": external_id}
        )
        if external_id is None:
            # NetSuite refuses a second externalId; a copy without one is known by lineage.
            w.tables["lineage_postings"].append(
                {
                    **w.row("lineage_postings", invoice_id="in_usd_open"),
                    "correlation_id": "cid-second-post",
                    "erp_record_id": record_id,
                }
            )

    return plant


def _unpay(w: World) -> None:
    w.drop("erp_payments", invoice_external_id="in_usd_paid")


def _less_in_erp_and_unpaid(w: World) -> None:
    _unpay(w)
    w.row("erp_invoices", external_id="in_usd_paid")["amount_minor"] = 2_500


def _nothing_to_collect(amount: int, erp_status: str = "open") -> Callable[[World], None]:
    """The paid USD invoice billed at `amount` (zero: a trial; below: a proration credit), which
    billing marks paid at once, and which no payment ever settles in the ERP."""

    def plant(w: World) -> None:
        w.row("billing_invoices", invoice_id="in_usd_paid")["amount_minor"] = amount
        w.row("erp_invoices", external_id="in_usd_paid").update(
            amount_minor=amount, status=erp_status
        )
        w.row("lineage_postings", invoice_id="in_usd_paid")["amount_minor"] = amount
        for half in (0, 1):
            w.row("erp_revenue_schedules", invoice_external_id="in_usd_paid",
                  record_id=f"rev_101_{half}")["amount_minor"] = amount // 2 if half else amount - amount // 2  # fmt: skip
        _unpay(w)

    return plant


CASES = [
    Case(
        "missing_in_erp",
        _not_posted,
        [
            {
                "kind": "missing_in_erp",
                "match_key": "in_usd_open",
                "source_amount_minor": 10_000,
                "target_id": None,
                "amount_at_risk_minor": 10_000,
                "currency": "USD",
                "correlation_ids": ["cid-in_usd_open"],
            }
        ],
    ),
    Case(
        "posted_but_missing",
        _drop_erp("in_jpy_open"),
        [
            {
                "kind": "posted_but_missing",
                "match_key": "in_jpy_open",
                "source_system": "concord",
                "target_id": "102",
                "amount_at_risk_minor": 1_500,
                "currency": "JPY",
                "correlation_ids": ["cid-in_jpy_open"],
            }
        ],
    ),
    Case(
        "orphan_in_erp",
        _orphan,
        [
            {
                "kind": "orphan_in_erp",
                "match_key": "999",
                "target_amount_minor": 4_200,
                "amount_at_risk_minor": 4_200,
                "currency": "USD",
                "refs": [{"system": "erp", "object_type": "invoice", "external_id": "999"}],
            }
        ],
    ),
    Case(
        "amount_mismatch_usd_just_past_tolerance",
        _set("erp_invoices", {"external_id": "in_usd_open"}, amount_minor=10_003),
        [
            {
                "kind": "amount_mismatch",
                "match_key": "in_usd_open|100",
                "source_amount_minor": 10_000,
                "target_amount_minor": 10_003,
                "amount_at_risk_minor": 3,
                "currency": "USD",
            }
        ],
    ),
    Case(
        # Left open in the ERP by the difference alone (billing's amount was paid): one finding.
        "amount_mismatch_on_a_paid_invoice_is_not_also_a_status_mismatch",
        _set("erp_invoices", {"external_id": "in_usd_paid"}, amount_minor=2_575),
        [{"kind": "amount_mismatch", "match_key": "in_usd_paid|101", "amount_at_risk_minor": 25}],
    ),
    Case(
        "a_paid_invoice_the_erp_holds_less_of_and_unpaid_is_both",
        _less_in_erp_and_unpaid,
        [
            {"kind": "amount_mismatch", "amount_at_risk_minor": 50},
            {"kind": "status_mismatch", "source_status": "paid", "target_status": "open"},
        ],
    ),  # fmt: skip
    Case(
        "amount_mismatch_below_billing",
        _set("erp_invoices", {"external_id": "in_kwd_open"}, amount_minor=12_342),
        [{"kind": "amount_mismatch", "amount_at_risk_minor": 3, "currency": "KWD"}],
    ),
    Case(
        "amount_mismatch_jpy_one_yen",
        _set("erp_invoices", {"external_id": "in_jpy_open"}, amount_minor=1_501),
        [{"kind": "amount_mismatch", "amount_at_risk_minor": 1, "currency": "JPY"}],
    ),
    Case(
        "usd_exactly_at_tolerance_is_clean",
        _set("erp_invoices", {"external_id": "in_usd_open"}, amount_minor=10_002),
        [],
    ),
    Case(
        "usd_exactly_at_tolerance_below_is_clean",
        _set("erp_invoices", {"external_id": "in_usd_paid"}, amount_minor=2_548),
        [],
    ),
    Case(
        "currency_mismatch",
        _set("erp_invoices", {"external_id": "in_jpy_paid"}, currency="USD"),
        [
            {
                "kind": "currency_mismatch",
                "source_currency": "JPY",
                "target_currency": "USD",
                "amount_at_risk_minor": 98_000,
                "currency": "JPY",
            }
        ],
    ),
    Case(
        "status_mismatch_paid_in_billing_open_in_erp",
        _unpay,
        [
            {
                "kind": "status_mismatch",
                "match_key": "in_usd_paid|101",
                "source_status": "paid",
                "target_status": "open",
                "amount_at_risk_minor": 2_550,
            }
        ],
    ),
    Case("nothing_to_collect_is_settled_in_the_erp_without_a_payment", _nothing_to_collect(0), []),
    Case("a_credit_invoice_is_settled_in_the_erp_without_a_payment", _nothing_to_collect(-500), []),
    Case(
        "nothing_to_collect_but_voided_in_the_erp",
        _nothing_to_collect(0, "voided"),
        [{"kind": "status_mismatch", "source_status": "paid", "target_status": "voided"}],
    ),
    Case(
        "status_mismatch_pending_approval",
        _set("erp_invoices", {"external_id": "in_kwd_open"}, status="pending_approval"),
        [{"kind": "status_mismatch", "source_status": "open", "target_status": "pending_approval"}],
    ),
    Case(
        "duplicate_posting_same_external_id",
        _copy_in_erp("in_usd_open", "200"),
        [
            {
                "kind": "duplicate_posting",
                "match_key": "in_usd_open",
                "target_id": "100,200",
                "target_amount_minor": 20_000,
                "amount_at_risk_minor": 10_000,
            }
        ],
    ),
    Case(
        "duplicate_posting_known_from_lineage",
        _copy_in_erp(None, "201"),
        [
            {
                "kind": "duplicate_posting",
                "match_key": "in_usd_open",
                "target_id": "100,201",
                "amount_at_risk_minor": 10_000,
                "correlation_ids": ["cid-in_usd_open", "cid-second-post"],
            }
        ],
    ),
    Case(
        "crm_contract_value_mismatch",
        _set("crm_deals", {"deal_id": "deal_sub_usd"}, amount_minor=100_000),
        [
            {
                "kind": "crm_contract_value_mismatch",
                "system": "crm",
                "source_amount_minor": 120_000,
                "target_amount_minor": 100_000,
                "amount_at_risk_minor": 20_000,
                "currency": "USD",
            }
        ],
    ),
    Case(
        "crm_within_tolerance_is_clean",
        _set("crm_deals", {"deal_id": "deal_sub_usd"}, amount_minor=119_998),
        [],
    ),
    Case(
        "revenue_schedule_mismatch",
        _set("erp_revenue_schedules", {"record_id": "rev_100_1"}, amount_minor=4_000),
        [
            {
                "kind": "revenue_schedule_mismatch",
                "match_key": "in_usd_open",
                "target_amount_minor": 9_000,
                "amount_at_risk_minor": 1_000,
                "target_id": "rev_100_0,rev_100_1",
            }
        ],
    ),
    Case(
        "fully_credited_in_billing_but_open_in_the_erp",
        _credit("in_usd_open", 10_000),
        [
            {
                "kind": "status_mismatch",
                "match_key": "in_usd_open|100",
                "source_status": "credited",
                "target_status": "open",
                "amount_at_risk_minor": 10_000,
                "currency": "USD",
            }
        ],
    ),
    Case(
        "fully_credited_and_voided_in_the_erp_is_clean", _credit("in_jpy_open", 1_500, "voided"), []
    ),
    Case("a_partial_credit_leaves_the_invoice_open", _credit("in_kwd_open", 12_000), []),
    Case(
        "a_difference_in_another_period_is_not_this_periods",
        _set("erp_invoices", {"external_id": "in_usd_prev"}, amount_minor=1),
        [],
    ),
]


def test_clean_world_finds_nothing_in_any_currency() -> None:
    result = reconcile(clean_world().arrow(), period=PERIOD, tolerance=TOLERANCE)
    assert result.findings.num_rows == 0
    assert result.findings.column_names == list(FINDING_COLUMNS)
    # Every kind had its inputs, so a clean result means every rule ran and found nothing.
    assert result.kinds_evaluated == frozenset(Kind)
    assert result.input_rows["billing_invoices"] == 8


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_a_planted_difference_is_found_and_nothing_else(case: Case) -> None:
    world = clean_world()
    case.plant(world)
    findings = _run(world)
    assert [_subset(f, e) for f, e in zip(findings, case.expected, strict=False)] == case.expected
    assert len(findings) == len(case.expected), findings
    for finding in findings:
        assert finding["period"] == PERIOD
        assert len(finding["fingerprint"]) == 64
        assert finding["refs"], "every finding links to the records it is about"


def test_every_kind_is_covered_by_a_case() -> None:
    assert {e["kind"] for c in CASES for e in c.expected} == {k.value for k in Kind}


def test_differences_planted_together_are_each_found_once() -> None:
    world = clean_world()
    _not_posted(world)
    _drop_erp("in_jpy_open")(world)
    _orphan(world)
    _set("erp_invoices", {"external_id": "in_kwd_open"}, amount_minor=12_342)(world)
    _set("erp_invoices", {"external_id": "in_kwd_open"}, status="pending_approval")(world)
    _set("erp_invoices", {"external_id": "in_jpy_paid"}, currency="USD")(world)
    _unpay(world)
    world.tables["erp_invoices"].append(
        {**world.row("erp_invoices", record_id="101"), "record_id": "300"}
    )
    _set("crm_deals", {"deal_id": "deal_sub_jpy"}, amount_minor=1)(world)
    _set("erp_revenue_schedules", {"record_id": "rev_101_0"}, amount_minor=0)(world)
    found = [(f["kind"], f["match_key"]) for f in _run(world)]
    assert found == [
        ("amount_mismatch", "in_kwd_open|104"),
        ("crm_contract_value_mismatch", "deal_sub_jpy|sub_jpy"),
        ("currency_mismatch", "in_jpy_paid|103"),
        ("duplicate_posting", "in_usd_paid"),
        ("missing_in_erp", "in_usd_open"),
        ("orphan_in_erp", "999"),
        ("posted_but_missing", "in_jpy_open"),
        ("revenue_schedule_mismatch", "in_usd_paid"),
        ("status_mismatch", "in_kwd_open|104"),
        ("status_mismatch", "in_usd_paid|101"),
    ]


def test_fingerprints_are_stable_and_values_do_not_change_them() -> None:
    first = clean_world()
    first.row("erp_invoices", external_id="in_usd_open")["amount_minor"] = 10_500
    second = clean_world()
    second.row("erp_invoices", external_id="in_usd_open")["amount_minor"] = 11_000
    [a] = _run(first)
    [b] = _run(second)
    assert a["fingerprint"] == b["fingerprint"]
    assert a["amount_at_risk_minor"] != b["amount_at_risk_minor"]
    [c] = _run(first)
    assert c == a


def test_without_crm_snapshots_the_crm_rule_is_not_evaluated() -> None:
    world = clean_world()
    del world.tables["crm_deals"]
    result = reconcile(world.arrow(), period=PERIOD, tolerance=TOLERANCE)
    assert Kind.CRM_CONTRACT_VALUE_MISMATCH not in result.kinds_evaluated
    assert Kind.AMOUNT_MISMATCH in result.kinds_evaluated
    assert result.findings.num_rows == 0


def test_without_a_billing_snapshot_no_erp_record_is_called_an_orphan() -> None:
    world = clean_world()
    del world.tables["billing_invoices"]
    world.tables["lineage_postings"].clear()
    result = reconcile(world.arrow(), period=PERIOD)
    assert Kind.ORPHAN_IN_ERP not in result.kinds_evaluated
    assert result.findings.num_rows == 0


def test_no_period_reports_every_period() -> None:
    world = clean_world()
    world.row("erp_invoices", external_id="in_usd_prev")["amount_minor"] = 1
    found = reconcile(world.arrow(), period=None, tolerance=TOLERANCE).findings.to_pylist()
    assert [(f["kind"], f["period"]) for f in found] == [("amount_mismatch", "2026-10")]


def test_parquet_files_and_arrow_tables_give_the_same_findings(tmp_path: Path) -> None:
    world = clean_world()
    _orphan(world)
    _unpay(world)
    paths = {}
    for name, table in world.arrow().items():
        paths[name] = tmp_path / f"{name}.parquet"
        pq.write_table(table, paths[name])
    from_files = reconcile(paths, period=PERIOD, tolerance=TOLERANCE).findings
    assert from_files.to_pylist() == _run(world)
    assert from_files.num_rows == 2


def test_columns_are_cast_to_the_contract() -> None:
    world = clean_world()
    tables = world.arrow()
    # An int32 amount and a large_string id are the same data to the rules.
    erp = tables["erp_invoices"]
    tables["erp_invoices"] = erp.set_column(
        erp.schema.get_field_index("amount_minor"),
        "amount_minor",
        erp.column("amount_minor").cast(pa.int32()),
    )
    assert reconcile(tables, period=PERIOD, tolerance=TOLERANCE).findings.num_rows == 0


def test_a_table_without_a_required_column_is_refused() -> None:
    tables = clean_world().arrow()
    tables["erp_invoices"] = tables["erp_invoices"].drop_columns(["currency"])
    with pytest.raises(SnapshotError, match="erp_invoices lacks columns: currency"):
        reconcile(tables, period=PERIOD)


def test_an_unknown_table_is_refused() -> None:
    with pytest.raises(SnapshotError, match="unknown snapshot tables: erp_vendors"):
        reconcile({"erp_vendors": pa.table({"x": [1]})}, period=PERIOD)


def test_negative_or_fractional_tolerances_are_refused() -> None:
    with pytest.raises(ValueError, match="non-negative integers"):
        Tolerance(default_minor=-1)
    with pytest.raises(ValueError, match="non-negative integers"):
        Tolerance(by_currency={"USD": 0.5})  # type: ignore[dict-item]
