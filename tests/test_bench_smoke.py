"""The benchmarks' own arithmetic, and two benchmarks end to end at a tiny size: each runs,
writes JSON, and derives its figures from its own measurements. Not a timed test: no figure
here is compared with a target."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.common import percentile, summary
from bench.server_timing import quantile_bound, share_within

ROOT = Path(__file__).resolve().parent.parent


def _bench(name: str, out: Path, *args: str, **env: str) -> dict[str, Any]:
    """Run `python -m bench.<name>` against the test PostgreSQL; its JSON."""
    pg = os.environ.get("CONCORD_TEST_DATABASE_URL")
    if not pg:
        pytest.skip("needs CONCORD_TEST_DATABASE_URL (PostgreSQL)")
    run = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", *args, "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "CONCORD_BENCH_PG_ADMIN_URL": pg, **env},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result: dict[str, Any] = json.loads(out.read_text())
    return result


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
    result = _bench(
        "lineage_writes",
        tmp_path / "lineage_writes.json",
        *("--steps", "20", "--runs", "2", "--database", "concord_bench_smoke"),
    )
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


def test_latency_runs_at_half_the_maximum_it_measured(tmp_path: Path, redis_url: str) -> None:
    result = _bench(
        "latency",
        tmp_path / "latency.json",
        *("--burst", "30", "--duration", "2", "--runs", "1"),
        *("--database", "concord_bench_smoke_latency"),
        CONCORD_BENCH_REDIS_URL=redis_url,
    )
    assert result["maximum_events_per_s"] > 0
    assert result["rate_per_s"] == max(1.0, round(result["maximum_events_per_s"] / 2, 1))
    assert result["events_per_run"] == max(10, int(result["rate_per_s"] * 2))
    metrics = result["metrics"]
    # Concord's path includes the sandbox's three calls, so it cannot be quicker than them.
    assert metrics["e2e_p50_ms"]["median"] > metrics["sandbox_round_trip_p50_ms"]["median"]
    assert 0 < metrics["ack_p50_ms"]["median"] < metrics["e2e_p50_ms"]["median"]
