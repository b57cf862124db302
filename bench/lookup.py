"""Lineage lookup through the API with millions of attempt rows, against a direct indexed query.

Generates the lineage in PostgreSQL itself (generate_series; foreign-key triggers off while
loading): per transaction one inbox event, one run, two steps of five attempts each, and one
ERP external reference, so `--attempts 20000000` means 2,000,000 transactions. The database is
kept (concord_bench_lookup_<attempts>) and reused by the next run of the same size.

Then, for random transactions, times sequential requests (one in flight, a person or a script
asking) of:

* GET /v1/transactions/{correlation_id}: the full lineage (runs, steps, attempts, refs);
* GET /v1/search?q={ERP external ID}: lookup by another system's ID;

and the baseline, the same lookups as one direct indexed query each over asyncpg (attempts by
correlation ID; external_ref by external ID). Reports p50/p95/p99 per repetition, and the
EXPLAIN (ANALYZE, BUFFERS) of the API's queries when a p99 misses 20 ms.

    python -m bench.lookup [--attempts 20000000] [--requests 500] [--runs 3] [--quick]
"""

import argparse
import asyncio
import random
import time
from typing import Any

import asyncpg
import httpx

from bench import common

STEPS, ATTEMPTS = 2, 5
TARGET_P99_MS = 20.0

_LOAD = [
    """INSERT INTO business_transaction (correlation_id, workflow, state, source_system, event_type,
         customer_id, subscription_id, invoice_id, amount_minor, currency, period, ordering_key,
         occurred_at, received_at, updated_at, completed_at, run_count)
       SELECT 'c' || lpad(i::text, 12, '0'), 'invoice_generated', 'posted', 'billing',
              'invoice.finalized', 'cus_' || (i / 10), 'sub_' || (i / 10), 'in_' || i, 1000 + i % 9000,
              'USD', '2026-11', 'invoice:in_' || i, t, t, t + interval '2 seconds',
              t + interval '2 seconds', 1
       FROM generate_series(1, $1) i, LATERAL (SELECT now() - (($1 - i) * interval '1 second') AS t) s""",
    """INSERT INTO inbox_event (id, source, source_event_id, event_type, status, correlation_id,
         payload, payload_sha256, received_at, deliveries, last_delivery_at)
       SELECT i, 'stripe', 'evt_' || i, 'invoice.finalized', 'accepted',
              'c' || lpad(i::text, 12, '0'), jsonb_build_object('id', 'evt_' || i), md5(i::text),
              now(), 1, now()
       FROM generate_series(1, $1) i""",
    """INSERT INTO workflow_run (id, correlation_id, number, trigger, state, started_at, ended_at,
         force_new_posting)
       SELECT i, 'c' || lpad(i::text, 12, '0'), 1, 'initial', 'succeeded', now(), now(), false
       FROM generate_series(1, $1) i""",
    f"""INSERT INTO workflow_step (id, run_id, correlation_id, name, target_system, state,
         idempotency_key, external_id, attempt_count, started_at, ended_at)
       SELECT i * {STEPS} + k, i, 'c' || lpad(i::text, 12, '0'),
              CASE k WHEN 0 THEN 'erp.post_invoice' ELSE 'crm.update_deal' END,
              CASE k WHEN 0 THEN 'erp' ELSE 'crm' END, 'succeeded',
              'c' || lpad(i::text, 12, '0') || ':' || k, 'in_' || i, {ATTEMPTS}, now(), now()
       FROM generate_series(1, $1) i, generate_series(0, {STEPS - 1}) k""",
    f"""INSERT INTO step_attempt (id, step_id, correlation_id, number, started_at, ended_at, outcome,
         error_class, http_status, target_ref)
       SELECT (i * {STEPS} + k) * {ATTEMPTS} + a, i * {STEPS} + k, 'c' || lpad(i::text, 12, '0'),
              a + 1, now(), now(),
              CASE WHEN a < {ATTEMPTS - 1} THEN 'failed' ELSE 'succeeded' END,
              CASE WHEN a < {ATTEMPTS - 1} THEN 'retryable' END,
              CASE WHEN a < {ATTEMPTS - 1} THEN 503 ELSE 201 END, 'INV-' || i
       FROM generate_series(1, $1) i, generate_series(0, {STEPS - 1}) k,
            generate_series(0, {ATTEMPTS - 1}) a""",
    """INSERT INTO external_ref (id, correlation_id, system, object_type, external_id, created_at)
       SELECT i, 'c' || lpad(i::text, 12, '0'), 'erp', 'invoice', 'INV-' || i, now()
       FROM generate_series(1, $1) i""",
]
_SEQUENCES = ["inbox_event", "workflow_run", "workflow_step", "step_attempt", "external_ref"]


def _cid(i: int) -> str:
    return "c" + str(i).rjust(12, "0")


async def prepare(attempts: int) -> tuple[str, int]:
    """The database for this size, generated unless a finished one is there; (url, transactions)."""
    transactions = attempts // (STEPS * ATTEMPTS)
    name = f"concord_bench_lookup_{attempts}"
    url = common.pg_url(name)
    if await common.database_exists(name):
        conn = await asyncpg.connect(url)
        try:
            done = await conn.fetchval("SELECT to_regclass('bench_loaded') IS NOT NULL")
        finally:
            await conn.close()
        if done:
            return url, transactions
    await common.recreate_database(name)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET session_replication_role = replica; SET synchronous_commit = off")
        for statement in _LOAD:
            started = time.perf_counter()
            await conn.execute(statement, transactions, timeout=None)
            table = statement.split()[2]
            print(f"loaded {table} in {time.perf_counter() - started:.0f}s")  # noqa: T201
        for table in _SEQUENCES:
            await conn.execute(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))")
        await conn.execute("VACUUM ANALYZE", timeout=None)
        await conn.execute("CREATE TABLE bench_loaded (at timestamptz DEFAULT now())")
    finally:
        await conn.close()
    return url, transactions


async def _timed(calls: list[Any]) -> list[float]:
    out = []
    for call in calls:
        start = time.perf_counter()
        await call()
        out.append((time.perf_counter() - start) * 1000)
    return out


async def api_latencies(api_url: str, key: str, ids: list[int]) -> dict[str, list[float]]:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30) as client:

        async def by_cid(i: int) -> None:
            response = await client.get(f"/v1/transactions/{_cid(i)}")
            assert response.status_code == 200, response.text
            body = response.json()
            assert sum(len(s["attempts"]) for s in body["runs"][0]["steps"]) == STEPS * ATTEMPTS

        async def by_external(i: int) -> None:
            response = await client.get("/v1/search", params={"q": f"INV-{i}"})
            assert response.status_code == 200, response.text
            assert [h["transaction"]["correlation_id"] for h in response.json()["items"]] == [
                _cid(i)
            ]

        return {
            "api_by_correlation_ms": await _timed([lambda i=i: by_cid(i) for i in ids]),
            "api_by_external_id_ms": await _timed([lambda i=i: by_external(i) for i in ids]),
        }


async def direct_latencies(url: str, ids: list[int]) -> dict[str, list[float]]:
    conn = await asyncpg.connect(url)
    try:

        async def by_cid(i: int) -> None:
            rows = await conn.fetch("SELECT * FROM step_attempt WHERE correlation_id = $1", _cid(i))
            assert len(rows) == STEPS * ATTEMPTS

        async def by_external(i: int) -> None:
            rows = await conn.fetch(
                "SELECT correlation_id FROM external_ref WHERE external_id = $1", f"INV-{i}"
            )
            assert len(rows) == 1

        return {
            "direct_by_correlation_ms": await _timed([lambda i=i: by_cid(i) for i in ids]),
            "direct_by_external_id_ms": await _timed([lambda i=i: by_external(i) for i in ids]),
        }
    finally:
        await conn.close()


async def explain(url: str, i: int) -> dict[str, list[str]]:
    """The plans of the queries behind both API calls (lineage/queries.py, lineage/search.py)."""
    statements = {
        "attempts_by_correlation": (
            "SELECT * FROM step_attempt WHERE correlation_id = $1 ORDER BY step_id, number",
            _cid(i),
        ),
        "steps_by_correlation": (
            "SELECT * FROM workflow_step WHERE correlation_id = $1 ORDER BY id",
            _cid(i),
        ),
        "external_ref_by_external_id": (
            "SELECT correlation_id, system, object_type FROM external_ref WHERE external_id = $1",
            f"INV-{i}",
        ),
        "event_by_source_event_id": (
            "SELECT correlation_id FROM inbox_event WHERE source_event_id = $1",
            f"INV-{i}",
        ),
    }
    conn = await asyncpg.connect(url)
    try:
        return {
            name: [r[0] for r in await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", arg)]
            for name, (sql, arg) in statements.items()
        }
    finally:
        await conn.close()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    url, transactions = await prepare(args.attempts)
    key = await common.create_key(url)
    rng = random.Random(7)
    per_run: dict[str, list[float]] = {}
    with common.PeakRss() as peaks, common.concord(url) as system:
        system.start_api()
        system.watch_all(peaks)
        warm = [rng.randint(1, transactions) for _ in range(20)]
        await api_latencies(system.api_url, key, warm)
        await direct_latencies(url, warm)
        for _ in range(args.runs):
            ids = [rng.randint(1, transactions) for _ in range(args.requests)]
            samples = {
                **await api_latencies(system.api_url, key, ids),
                **await direct_latencies(url, ids),
            }
            for name, values in samples.items():
                for q in (50, 95, 99):
                    per_run.setdefault(f"{name[:-3]}_p{q}_ms", []).append(
                        common.percentile(values, q)
                    )
    units = dict.fromkeys(per_run, "ms")
    common.print_table(
        f"lineage lookup, {args.attempts:,} attempt rows, {args.requests} requests per kind per run",
        common.stat_rows(per_run, units),
    )
    common.print_memory(peaks.peaks_mb)
    p99 = {
        "by_correlation": common.summary(per_run["api_by_correlation_p99_ms"])["median"],
        "by_external_id": common.summary(per_run["api_by_external_id_p99_ms"])["median"],
    }
    ratios = {
        "by_correlation": p99["by_correlation"]
        / common.summary(per_run["direct_by_correlation_p99_ms"])["median"],
        "by_external_id": p99["by_external_id"]
        / common.summary(per_run["direct_by_external_id_p99_ms"])["median"],
    }
    targets = {f"api_{k}_p99_at_most_20ms": v <= TARGET_P99_MS for k, v in p99.items()}
    plans = await explain(url, rng.randint(1, transactions))
    if not all(targets.values()):
        for name, lines in plans.items():
            print(f"\nEXPLAIN {name}\n  " + "\n  ".join(lines))  # noqa: T201
    print(f"\np99 API/direct: {ratios}\ntargets: {targets}")  # noqa: T201
    return {
        "attempt_rows": transactions * STEPS * ATTEMPTS,
        "transactions": transactions,
        "requests_per_kind_per_run": args.requests,
        "runs": args.runs,
        "metrics": {k: {"values": v, **common.summary(v)} for k, v in per_run.items()},
        "units": units,
        "p99_ratio_api_to_direct": ratios,
        "targets_met": targets,
        "explain": plans,
        "peak_rss_mb": peaks.peaks_mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attempts", type=int, default=20_000_000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--quick", action="store_true", help="200,000 attempts, 200 requests, 2 runs"
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.quick:
        args.attempts, args.requests, args.runs = 200_000, 200, 2
    common.write_json("lookup", asyncio.run(main_async(args)), args.out)


if __name__ == "__main__":
    main()
