"""Reconciliation at scale: 1,000,000 billing invoices against 1,000,000 ERP records.

Plants 1 % differences (10,000 of 1,000,000 invoices), spread evenly over all nine mismatch
kinds, writes every snapshot as Parquet, then times, in this one process and on the same files:

* engine: reconciliation.engine.reconcile (every rule, lineage, payments, CRM, revenue), and
* bare join: one DuckDB FULL OUTER JOIN of billing and ERP invoices comparing amount and
  currency: the least any reconciliation of these two files must do; and
* bare join of every input: the same over all seven files the engine reads, joined the least a
  comparison of them can be (the engine reads 3.8 M rows, the two-file join 2 M).

Wall time is what the issue asks about; the CPU time of this process (DuckDB's threads
included) is printed beside it because it hardly moves when other work shares the machine,
which makes it the better measure when comparing two versions of the engine.

Prints median, min and max of several runs, rows per second, the ratio to the bare join and
the peak resident memory of each phase, writes the same as JSON, and checks that the engine
found exactly the planted differences. Nothing here is a timed assertion.

    python -m bench.reconcile [--invoices 1000000] [--runs 5] [--threads 2] [--out FILE]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb

from reconciliation.engine import Tolerance, reconcile
from reconciliation.snapshots import Kind

PERIOD = "2026-11"
# Every planted row is an invoice i with i % 100 == 0; its kind is KINDS[(i // 100) % 9].
KINDS = [
    Kind.MISSING_IN_ERP,
    Kind.POSTED_BUT_MISSING,
    Kind.ORPHAN_IN_ERP,
    Kind.AMOUNT_MISMATCH,
    Kind.CURRENCY_MISMATCH,
    Kind.STATUS_MISMATCH,
    Kind.DUPLICATE_POSTING,
    Kind.CRM_CONTRACT_VALUE_MISMATCH,
    Kind.REVENUE_SCHEDULE_MISMATCH,
]
_GENERATE = """
CREATE TEMP TABLE inv AS
SELECT i,
       'in_' || lpad(CAST(i AS VARCHAR), 8, '0') AS invoice_id,
       CASE WHEN i % 100 = 0 THEN (i // 100) % 9 ELSE -1 END AS planted,
       CASE i % 10 WHEN 0 THEN 'JPY' WHEN 1 THEN 'EUR' ELSE 'USD' END AS currency,
       CAST(1000 + (i * 7919) % 100000 AS BIGINT) AS amount_minor,
       CASE WHEN i % 2 = 1 THEN 'paid' ELSE 'open' END AS status
FROM range(?) t(i);

CREATE TEMP VIEW billing_invoices AS
SELECT invoice_id, 'cus_' || (i // 10) AS customer_id, 'sub_' || (i // 10) AS subscription_id,
       amount_minor, currency, status, '2026-11' AS period FROM inv;

CREATE TEMP VIEW erp_invoices AS
SELECT 'r' || i AS record_id, invoice_id AS external_id,
       amount_minor + CASE WHEN planted = 3 THEN 5 ELSE 0 END AS amount_minor,
       CASE WHEN planted = 4 THEN 'GBP' ELSE currency END AS currency,
       CASE WHEN planted = 5 THEN 'pending_approval' ELSE 'open' END AS status,
       '2026-11' AS period
FROM inv WHERE planted NOT IN (0, 1)
UNION ALL
SELECT 'o' || i, 'orphan_' || i, amount_minor, currency, 'open', '2026-11' FROM inv WHERE planted = 2
UNION ALL
SELECT 'd' || i, invoice_id, amount_minor, currency, 'open', '2026-11' FROM inv WHERE planted = 6;

CREATE TEMP VIEW erp_payments AS
SELECT 'p' || i AS record_id, 'py_' || i AS external_id, invoice_id AS invoice_external_id,
       amount_minor, currency, '2026-11' AS period
FROM inv WHERE status = 'paid';

CREATE TEMP VIEW lineage_postings AS
SELECT 'cid-' || i AS correlation_id, invoice_id,
       CASE WHEN planted = 0 THEN NULL ELSE 'r' || i END AS erp_record_id,
       amount_minor, currency,
       CASE WHEN planted = 0 THEN 'exception' ELSE 'posted' END AS state, '2026-11' AS period
FROM inv;

CREATE TEMP VIEW erp_revenue_schedules AS
SELECT 'rev' || i AS record_id, 'rev_' || i AS external_id, invoice_id AS invoice_external_id,
       amount_minor + CASE WHEN planted = 8 THEN 10 ELSE 0 END AS amount_minor,
       currency, '2026-11' AS period
FROM inv WHERE i % 10 = 0;

CREATE TEMP VIEW billing_subscriptions AS
SELECT 'sub_' || (i // 10) AS subscription_id, 'cus_' || (i // 10) AS customer_id,
       CAST(12000 + i AS BIGINT) AS contract_value_minor, 'USD' AS currency, 'active' AS status
FROM inv WHERE i % 10 = 0;

CREATE TEMP VIEW crm_deals AS
SELECT 'deal_' || (i // 10) AS deal_id, 'sub_' || (i // 10) AS subscription_id,
       CAST(12000 + i + CASE WHEN planted = 7 THEN 100 ELSE 0 END AS BIGINT) AS amount_minor,
       'USD' AS currency
FROM inv WHERE i % 10 = 0;

-- What the engine must find, keyed as its rules key them.
CREATE TEMP TABLE expected AS
SELECT planted, CASE planted
         WHEN 2 THEN 'o' || i
         WHEN 3 THEN invoice_id || '|r' || i
         WHEN 4 THEN invoice_id || '|r' || i
         WHEN 5 THEN invoice_id || '|r' || i
         WHEN 7 THEN 'deal_' || (i // 10) || '|sub_' || (i // 10)
         ELSE invoice_id END AS match_key
FROM inv WHERE planted >= 0;
"""

_TABLES = (
    "billing_invoices",
    "billing_subscriptions",
    "crm_deals",
    "erp_invoices",
    "erp_payments",
    "erp_revenue_schedules",
    "lineage_postings",
)

_BARE_JOIN = """
SELECT count(*) FROM read_parquet(?) b
FULL OUTER JOIN read_parquet(?) e ON e.external_id = b.invoice_id
WHERE b.invoice_id IS NULL OR e.external_id IS NULL
   OR b.amount_minor <> e.amount_minor OR b.currency <> e.currency
"""

# The same comparison over every file the engine reads, joined the least a reconciliation of
# them can be: invoices of all three sides in one pass, with ERP payments and revenue schedules
# summed per invoice and the CRM deals against billing's subscriptions.
_BARE_JOIN_ALL = """
WITH pay AS (SELECT invoice_external_id AS id, sum(amount_minor) AS paid
             FROM read_parquet($erp_payments) GROUP BY 1),
     rev AS (SELECT invoice_external_id AS id, sum(amount_minor) AS scheduled
             FROM read_parquet($erp_revenue_schedules) GROUP BY 1)
SELECT (SELECT count(*) FROM read_parquet($billing_invoices) b
        FULL OUTER JOIN read_parquet($erp_invoices) e ON e.external_id = b.invoice_id
        FULL OUTER JOIN read_parquet($lineage_postings) l
            ON l.invoice_id = coalesce(b.invoice_id, e.external_id)
        LEFT JOIN pay ON pay.id = b.invoice_id
        LEFT JOIN rev ON rev.id = b.invoice_id
        WHERE b.invoice_id IS NULL OR e.external_id IS NULL OR l.invoice_id IS NULL
           OR b.amount_minor <> e.amount_minor OR b.currency <> e.currency
           OR b.status <> e.status OR pay.paid > e.amount_minor
           OR rev.scheduled <> b.amount_minor)
     + (SELECT count(*) FROM read_parquet($crm_deals) d
        JOIN read_parquet($billing_subscriptions) s ON s.subscription_id = d.subscription_id
        WHERE d.amount_minor <> s.contract_value_minor)
"""


def generate(directory: Path, invoices: int) -> tuple[dict[str, Path], dict[str, set[str]]]:
    """Write the snapshots as Parquet; return their paths and the planted match keys by kind."""
    con = duckdb.connect(":memory:")
    try:
        statements = [s for s in _GENERATE.split(";") if s.strip()]
        con.execute(statements[0], [invoices])
        for statement in statements[1:]:
            con.execute(statement)
        paths = {}
        for table in _TABLES:
            paths[table] = directory / f"{table}.parquet"
            con.sql(f"SELECT * FROM {table}").write_parquet(str(paths[table]))
        expected: dict[str, set[str]] = {k.value: set() for k in KINDS}
        for planted, key in con.sql("SELECT planted, match_key FROM expected").fetchall():
            expected[KINDS[planted].value].add(key)
    finally:
        con.close()
    return paths, expected


@contextmanager
def peak_rss() -> Iterator[list[int]]:
    """Sample this process's resident memory every 5 ms; yields [peak bytes] when done."""
    result = [0]
    stop = threading.Event()
    page = os.sysconf("SC_PAGE_SIZE")

    def sample() -> None:
        while not stop.is_set():
            with open("/proc/self/statm") as statm:
                result[0] = max(result[0], int(statm.read().split()[1]) * page)
            stop.wait(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()


@dataclass
class Measure:
    name: str
    median_s: float
    min_s: float
    max_s: float
    median_cpu_s: float
    invoice_rows_per_s: float
    all_rows_per_s: float
    peak_rss_mib: float


def _summary(
    name: str, times: list[float], cpu: list[float], peak: int, invoice_rows: int, all_rows: int
) -> Measure:
    median = statistics.median(times)
    return Measure(
        name=name,
        median_s=median,
        min_s=min(times),
        max_s=max(times),
        median_cpu_s=statistics.median(cpu),
        invoice_rows_per_s=invoice_rows / median,
        all_rows_per_s=all_rows / median,
        peak_rss_mib=peak / 2**20,
    )


@dataclass
class Timings:
    wall_s: list[float]
    cpu_s: list[float]
    peak_rss: int = 0


def _timed(call: Callable[[], Any], into: Timings) -> Any:
    with peak_rss() as peak:
        wall, cpu = time.perf_counter(), time.process_time()
        result = call()
        into.cpu_s.append(time.process_time() - cpu)
        into.wall_s.append(time.perf_counter() - wall)
    into.peak_rss = max(into.peak_rss, peak[0])
    return result


def measure_alternating(
    calls: dict[str, Callable[[], Any]], runs: int
) -> tuple[dict[str, Timings], Any]:
    """Run the calls in turn, `runs` times, so that all meet the same machine (other load comes
    and goes); returns each one's timings and the first call's last result."""
    for call in calls.values():
        call()  # warm the page cache and DuckDB's code paths once
    timings = {name: Timings([], []) for name in calls}
    results: dict[str, Any] = {}
    for _ in range(runs):
        for name, call in calls.items():
            results[name] = _timed(call, timings[name])
    return timings, results[next(iter(calls))]


def bare_join(paths: dict[str, Path], threads: int) -> int:
    con = duckdb.connect(":memory:", config={"threads": threads})
    try:
        [(count,)] = con.execute(
            _BARE_JOIN, [str(paths["billing_invoices"]), str(paths["erp_invoices"])]
        ).fetchall()
        return int(count)
    finally:
        con.close()


def bare_join_all(paths: dict[str, Path], threads: int) -> int:
    con = duckdb.connect(":memory:", config={"threads": threads})
    try:
        [(count,)] = con.execute(
            _BARE_JOIN_ALL, {table: str(path) for table, path in paths.items()}
        ).fetchall()
        return int(count)
    finally:
        con.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--invoices", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/results/reconcile.json"))
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="concord-bench-") as tmp:
        paths, expected = generate(Path(tmp), args.invoices)
        counts = {}
        con = duckdb.connect(":memory:")
        for table, path in paths.items():
            [(counts[table],)] = con.execute(
                "SELECT count(*) FROM read_parquet(?)", [str(path)]
            ).fetchall()
        con.close()
        invoice_rows = counts["billing_invoices"] + counts["erp_invoices"]
        all_rows = sum(counts.values())

        tolerance = Tolerance(default_minor=1)
        timings, result = measure_alternating(
            {
                "engine": lambda: reconcile(
                    paths, period=PERIOD, tolerance=tolerance, threads=args.threads
                ),
                "bare join": lambda: bare_join(paths, args.threads),
                "bare all": lambda: bare_join_all(paths, args.threads),
            },
            args.runs,
        )
        measures = {
            name: _summary(name, t.wall_s, t.cpu_s, t.peak_rss, invoice_rows, all_rows)
            for name, t in timings.items()
        }
        engine, bare, bare_all = measures["engine"], measures["bare join"], measures["bare all"]

    found: dict[str, set[str]] = {k.value: set() for k in KINDS}
    for kind, key in zip(
        result.findings.column("kind").to_pylist(),
        result.findings.column("match_key").to_pylist(),
        strict=True,
    ):
        found[kind].add(key)
    exact = found == expected and result.findings.num_rows == sum(map(len, expected.values()))

    ratio = engine.median_s / bare.median_s
    cpu_ratio = engine.median_cpu_s / bare.median_cpu_s
    ratio_all = engine.median_s / bare_all.median_s
    cpu_ratio_all = engine.median_cpu_s / bare_all.median_cpu_s
    lines = [
        f"reconcile bench: {counts['billing_invoices']:,} billing invoices vs "
        f"{counts['erp_invoices']:,} ERP invoices ({all_rows:,} rows in all inputs), "
        f"{args.threads} threads, {args.runs} runs",
        f"{'':10} {'median s':>9} {'min s':>7} {'max s':>7} {'cpu s':>7} {'inv rows/s':>12} "
        f"{'all rows/s':>12} {'peak RSS MiB':>13}",
    ]
    for m in (engine, bare, bare_all):
        lines.append(
            f"{m.name:10} {m.median_s:9.3f} {m.min_s:7.3f} {m.max_s:7.3f} {m.median_cpu_s:7.3f} "
            f"{m.invoice_rows_per_s:12,.0f} {m.all_rows_per_s:12,.0f} {m.peak_rss_mib:13.0f}"
        )
    lines.append(f"engine / bare join: {ratio:.2f}x wall, {cpu_ratio:.2f}x cpu")
    lines.append(
        f"engine / bare join of every input: {ratio_all:.2f}x wall, {cpu_ratio_all:.2f}x cpu"
    )
    lines.append(
        f"planted {sum(map(len, expected.values())):,}, found {result.findings.num_rows:,}: "
        + ("exactly the planted differences" if exact else "MISMATCH, see JSON")
    )
    sys.stdout.write("\n".join(lines) + "\n")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "invoices": args.invoices,
        "threads": args.threads,
        "runs": args.runs,
        "cpu_count": os.cpu_count(),
        "duckdb": duckdb.__version__,
        "input_rows": counts,
        "engine": asdict(engine),
        "bare_join": asdict(bare),
        "bare_join_all_inputs": asdict(bare_all),
        "engine_times_s": timings["engine"].wall_s,
        "bare_join_times_s": timings["bare join"].wall_s,
        "bare_join_all_inputs_times_s": timings["bare all"].wall_s,
        "engine_cpu_s": timings["engine"].cpu_s,
        "bare_join_cpu_s": timings["bare join"].cpu_s,
        "bare_join_all_inputs_cpu_s": timings["bare all"].cpu_s,
        "load_average": os.getloadavg(),
        "ratio_to_bare_join": ratio,
        "cpu_ratio_to_bare_join": cpu_ratio,
        "ratio_to_bare_join_all_inputs": ratio_all,
        "cpu_ratio_to_bare_join_all_inputs": cpu_ratio_all,
        "planted_per_kind": {k: len(v) for k, v in expected.items()},
        "found_per_kind": {k: len(v) for k, v in found.items()},
        "exact": exact,
        "missed": {k: sorted(expected[k] - found[k])[:20] for k in expected},
        "unexpected": {k: sorted(found[k] - expected[k])[:20] for k in found},
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
