"""What keeping the SLA figures warm costs PostgreSQL: after one dashboard visit (the SLA page's
two calls), the share of 100 ms samples in which an API backend is running an SLA statement,
over a quiet minute in which nobody asks, with CONCORD_SLA_KEEP_WARM_S at its default and, as
the baseline in the same run, at 0 (the reading then expires unread, so the share is about 0).

Uses the dashboard benchmark's database (concord_bench_dashboard_<N>, built if missing).

    python -m bench.sla_keeper [--transactions 1000000] [--runs 3] [--seconds 60] [--quick]
"""

import argparse
import asyncio
import time
from typing import Any

import asyncpg
import httpx

from bench import common
from bench.dashboard_load import prepare

SAMPLE_S = 0.1
_ACTIVE_SLA = """SELECT count(*) FROM pg_stat_activity
                 WHERE state = 'active' AND pid <> pg_backend_pid()
                   AND query ILIKE '%business_transaction%'"""


async def busy_share(url: str, keep_warm_s: str, seconds: float) -> tuple[float, int]:
    """The share of samples with an SLA statement running, and how many readings the API made."""
    with common.concord(url) as system:
        system.start_api(CONCORD_SLA_MAX_AGE_S="15", CONCORD_SLA_KEEP_WARM_S=keep_warm_s)
        key = await common.create_key(url, "executive")
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=system.api_url, headers=headers, timeout=300) as c:
            await c.get("/v1/sla/summary", params={"window": "24h"})
            await c.get("/v1/sla/timeseries", params={"window": "24h", "bucket": "15m"})
        conn = await asyncpg.connect(url)
        try:
            busy = samples = readings = 0
            was_busy = False
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                now_busy = await conn.fetchval(_ACTIVE_SLA) > 0
                busy += now_busy
                readings += now_busy and not was_busy
                was_busy = now_busy
                samples += 1
                await asyncio.sleep(SAMPLE_S)
        finally:
            await conn.close()
    return busy / samples, readings


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    url = await prepare(args.transactions)
    metrics: dict[str, list[float]] = {
        "kept_warm_busy_share": [],
        "kept_warm_readings": [],
        "baseline_busy_share": [],
    }
    for _ in range(args.runs):
        share, readings = await busy_share(url, "3600", args.seconds)
        metrics["kept_warm_busy_share"].append(share)
        metrics["kept_warm_readings"].append(readings)
        baseline, _ = await busy_share(url, "0", args.seconds)
        metrics["baseline_busy_share"].append(baseline)
    units = {"kept_warm_busy_share": "", "kept_warm_readings": "n", "baseline_busy_share": ""}
    common.print_table(
        f"SLA keeper, {args.transactions:,} transactions, {args.seconds:.0f} s after one visit",
        common.stat_rows(metrics, units),
    )
    return {
        "transactions_in_window": args.transactions,
        "runs": args.runs,
        "seconds": args.seconds,
        "metrics": {k: {"values": v, **common.summary(v)} for k, v in metrics.items()},
        "units": units,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="20,000 transactions, 1 run, 30 s")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.quick:
        args.transactions, args.runs, args.seconds = 20_000, 1, 30.0
    common.write_json("sla_keeper", asyncio.run(main_async(args)), args.out)


if __name__ == "__main__":
    main()
