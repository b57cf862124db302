"""The benchmarks' own arithmetic, and one benchmark end to end at a tiny size: it runs, writes
JSON, and its ratio is computed from its own measurements. Not a timed test: no figure here
is compared with a target."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import percentile, summary
from bench.server_timing import quantile_bound, share_within

ROOT = Path(__file__).resolve().parent.parent


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, q) for q in (50, 95, 99, 100)] == [50.0, 95.0, 99.0, 100.0]
    assert percentile([3.0, 1.0, 2.0], 99) == 3.0
    assert percentile([7.0], 50) == 7.0


def test_summary_is_median_min_max() -> None:
    assert summary([5.0, 1.0, 3.0]) == {"median": 3.0, "min": 1.0, "max": 5.0, "n": 3}
    assert summary([4.0, 1.0, 3.0, 2.0])["median"] == 2.5


def test_server_histogram_figures_count_only_the_answers_between_two_readings() -> None:
    inf = float("inf")
    before = {0.01: 50.0, 0.02: 90.0, 0.05: 100.0, inf: 100.0}
    # 200 answers since: 150 within 10 ms, 190 within 20 ms, all within 50 ms.
    after = {0.01: 200.0, 0.02: 280.0, 0.05: 300.0, inf: 300.0}

    assert share_within(before, after, 0.02) == 95.0
    assert quantile_bound(before, after, 75) == 0.01
    assert quantile_bound(before, after, 95) == 0.02
    assert quantile_bound(before, after, 99) == 0.05


def test_lineage_writes_runs_and_reports_its_own_ratio(tmp_path: Path) -> None:
    pg = os.environ.get("CONCORD_TEST_DATABASE_URL")
    if not pg:
        pytest.skip("needs CONCORD_TEST_DATABASE_URL (PostgreSQL)")
    out = tmp_path / "lineage_writes.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.lineage_writes", "--steps", "20", "--runs", "2",
         "--database", "concord_bench_smoke", "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "CONCORD_BENCH_PG_ADMIN_URL": pg},
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    metrics = result["metrics"]
    ratios = [
        c / r
        for c, r in zip(
            metrics["concord_steps_per_s"]["values"],
            metrics["raw_steps_per_s"]["values"],
            strict=True,
        )
    ]
    assert metrics["ratio"]["values"] == pytest.approx(ratios)
    assert result["ratio"] == pytest.approx(
        sorted(ratios)[0] + (sorted(ratios)[1] - sorted(ratios)[0]) / 2
    )
    # The claim, the attempt before the call, the outcome with its reference and the settlement
    # after it: every one of them reaches the database, whatever else the count includes.
    assert metrics["concord_round_trips_per_step"]["median"] >= 3
    assert set(result["targets_met"]) == {"ratio_at_least_0.5"}
    assert result["peak_rss_mb"]["bench"] > 0
