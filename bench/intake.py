"""Intake service time: one signed `invoice.finalized` at a time to the API alone, until its 202.

Nothing else runs (no workers, one request in flight), so this is what one delivery costs the
API and the database, without queueing. Two floors are measured in the same run, alternated with
Concord in blocks of 100 requests:

* HTTP floor: `GET /healthz` on the same API over the same kept-alive connection (the web
  framework, the middleware and the loopback, no database);
* database floor: asyncpg sending what the intake commits for a delivery, straight, in the one
  statement the intake sends in autocommit: the event, the transaction and its external
  references (the commit waits on the WAL flush, as the API's does).

Prints the median, min and max of the runs' p50 and p99, the ratios, and peak memory; writes the
same as JSON. Nothing here is a timed assertion.

    python -m bench.intake [--requests 1000] [--runs 3] [--quick] [--out FILE]
"""

import argparse
import asyncio
import json
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx

from bench import common, load

DATABASE = "concord_bench_intake"
BLOCK = 100
# The rows the intake writes for one invoice.finalized, minus what the database fills in, in
# the one statement it sends on PostgreSQL (lineage/hot_path.py, FIRST_DELIVERY).
_FLOOR_SQL = """
WITH new_event AS (
    INSERT INTO inbox_event (source, source_event_id, event_type, status, correlation_id,
        payload, payload_sha256, received_at, deliveries, last_delivery_at)
    VALUES ('stripe', $1, 'invoice.finalized', 'accepted', $2, $3, $4, $5, 1, $5)
    ON CONFLICT (source, source_event_id) DO NOTHING RETURNING id
), new_transaction AS (
    INSERT INTO business_transaction (correlation_id, workflow, state, source_system,
        event_type, canonical, customer_id, invoice_id, amount_minor, currency, period,
        ordering_key, received_at, updated_at, run_count)
    SELECT $2, 'invoice_generated', 'received', 'billing', 'invoice.finalized', $7, 'cus_1',
        $6, 1000, 'USD', '2026-11', $6, $5, $5, 0
    FROM new_event
), new_refs AS (
    INSERT INTO external_ref (correlation_id, system, object_type, external_id, created_at)
    SELECT $2, 'billing', named.object_type, named.external_id, $5
    FROM new_event, (VALUES ('invoice', $6), ('customer', 'cus_1'), ('subscription', 'sub_1'))
        AS named (object_type, external_id)
)
SELECT id FROM new_event
"""


def _ms(samples: list[float], q: float) -> float:
    return common.percentile(samples, q) * 1000


async def _timed(call: Any) -> float:
    start = time.perf_counter()
    await call()
    return time.perf_counter() - start


async def _floor_delivery(conn: asyncpg.Connection, body: bytes) -> None:
    cid, invoice, now = secrets.token_hex(16), f"in_{secrets.token_hex(12)}", datetime.now(UTC)
    await conn.fetchval(
        _FLOOR_SQL, f"evt_{cid}", cid, body.decode(), cid * 2, now, invoice, '{"invoice_id": "x"}'
    )


async def one_run(api_url: str, database_url: str, requests: int) -> dict[str, float]:
    items = load.deliveries(requests)
    samples: dict[str, list[float]] = {"concord": [], "http_floor": [], "db_floor": []}
    conn = await asyncpg.connect(database_url)
    try:
        async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:

            async def deliver(item: load.Delivery) -> None:
                response = await client.post(
                    "/v1/webhooks/stripe", content=item.body, headers=item.headers
                )
                if response.status_code != 202:
                    raise RuntimeError(f"{response.status_code}: {response.text[:200]}")

            async def health() -> None:
                (await client.get("/healthz")).raise_for_status()

            for start in range(0, requests, BLOCK):
                for item in items[start : start + BLOCK]:
                    samples["concord"].append(await _timed(lambda i=item: deliver(i)))
                for item in items[start : start + BLOCK]:
                    samples["http_floor"].append(await _timed(health))
                    samples["db_floor"].append(
                        await _timed(lambda i=item: _floor_delivery(conn, i.body))
                    )
    finally:
        await conn.close()
    return {
        f"{name}_{label}_ms": _ms(values, q)
        for name, values in samples.items()
        for label, q in (("p50", 50), ("p99", 99))
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    common.flush_redis(common.REDIS_URL)
    url = await common.recreate_database(DATABASE)
    metrics: dict[str, list[float]] = {}
    with common.PeakRss() as peaks, common.concord(url) as system:
        system.start_api()
        system.watch_all(peaks)
        await one_run(system.api_url, url, min(args.requests, 100))  # warm-up
        for _ in range(args.runs):
            for name, value in (await one_run(system.api_url, url, args.requests)).items():
                metrics.setdefault(name, []).append(value)
    med = {k: common.summary(v)["median"] for k, v in metrics.items()}
    ratios = {
        "p50_over_http_floor": med["concord_p50_ms"] / med["http_floor_p50_ms"],
        "p50_over_db_floor": med["concord_p50_ms"] / med["db_floor_p50_ms"],
        "p50_over_both_floors": med["concord_p50_ms"]
        / (med["http_floor_p50_ms"] + med["db_floor_p50_ms"]),
    }
    common.print_table(
        f"intake service time, one delivery at a time, {args.requests} per run",
        common.stat_rows(metrics, dict.fromkeys(metrics, "ms")),
    )
    common.print_memory(peaks.peaks_mb)
    print("\n" + json.dumps({k: round(v, 2) for k, v in ratios.items()}))  # noqa: T201
    return {
        "requests_per_run": args.requests,
        "runs": args.runs,
        "metrics": {k: {"values": v, **common.summary(v)} for k, v in metrics.items()},
        "units": dict.fromkeys(metrics, "ms"),
        "ratios": ratios,
        "peak_rss_mb": peaks.peaks_mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="300 requests, 2 runs")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.quick:
        args.requests, args.runs = 300, 2
    common.write_json("intake", asyncio.run(main_async(args)), args.out)


if __name__ == "__main__":
    main()
