"""End-to-end throughput: signed Stripe webhooks in over HTTP, the API commits them to
PostgreSQL, two worker processes post each invoice to the sandbox ERP over HTTP; events per
second from the first send until every transaction is `posted`.

Baseline in the same run: bare arq no-op jobs per second through the same Redis with two worker
processes (bench/noop_worker.py: same max_jobs, poll delay and event loop as Concord's worker).

Beside the rate, each run reports the CPU milliseconds per event of every process it started,
of PostgreSQL and Redis, and how busy the cores were (common.CpuMeter): where an event's cost
goes when the machine, not a wait, is the limit.

    python -m bench.e2e_throughput [--events 1500] [--runs 3] [--quick] [--out FILE]
"""

import argparse
import asyncio
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
from arq.connections import ArqRedis

from bench import common, load
from bench.noop_worker import DEFAULT_POLL_DELAY_S, QUEUE

DATABASE = "concord_bench_e2e"


async def _count_posted(conn: asyncpg.Connection) -> int:
    return int(
        await conn.fetchval("SELECT count(*) FROM business_transaction WHERE state = 'posted'")
    )


async def concord_run(system: common.Concord, events: int) -> dict[str, float]:
    items = load.deliveries(events)
    conn = await asyncpg.connect(system.database_url)
    try:
        before = await _count_posted(conn)
        t0 = time.perf_counter()
        sending = asyncio.create_task(load.send_all(system.api_url, items))
        while not sending.done():
            await asyncio.sleep(0.05)
        sent = sending.result()
        t_acked = time.perf_counter()
        if sent.failures:
            raise RuntimeError(f"{sent.failures} deliveries were not accepted")
        deadline = time.monotonic() + 600
        while await _count_posted(conn) - before < events:
            if time.monotonic() > deadline:
                raise TimeoutError("not every transaction posted within 600 s")
            await asyncio.sleep(0.02)
        t_done = time.perf_counter()
    finally:
        await conn.close()
    return {
        "events_per_s": events / (t_done - t0),
        "intake_per_s": events / (t_acked - t0),
        "ack_p99_ms": common.percentile(sent.ack_s, 99) * 1000,
        "seconds": t_done - t0,
        "sender_retries": float(sent.retries),
        "api_5xx": float(sent.server_errors),
    }


async def baseline_run(redis_url: str, jobs: int) -> float:
    """No-op jobs per second: from the first enqueue until the queue is drained."""
    pool = ArqRedis.from_url(redis_url)
    try:
        t0 = time.perf_counter()
        gate = asyncio.Semaphore(64)

        async def enqueue() -> None:
            async with gate:
                await pool.enqueue_job("noop", _queue_name=QUEUE)

        await asyncio.gather(*(enqueue() for _ in range(jobs)))
        while await pool.zcard(QUEUE) or await pool.keys("arq:in-progress:*"):
            await asyncio.sleep(0.01)
        return jobs / (time.perf_counter() - t0)
    finally:
        await pool.aclose()


def _start_profilers(system: common.Concord, out_dir: str) -> list[subprocess.Popen[bytes]]:
    """py-spy on the API and one worker for the first measured run (needs ptrace)."""
    # `pip install py-spy` into the venv puts it beside the interpreter, which need not be on PATH.
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if py_spy is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [
                py_spy,
                "record",
                "--nonblocking",
                "--format",
                "raw",
                "--rate",
                "100",
                "-o",
                f"{out_dir}/{name}.txt",
                "-p",
                str(system.processes[name].pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name in ("api", "worker1")
    ]


def _stop_profilers(profilers: list[subprocess.Popen[bytes]]) -> None:
    for proc in profilers:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


def _cpu_per_event(used: dict[str, float], events: int) -> dict[str, float]:
    """Milliseconds of CPU per event in each process, the total, and how busy the cores were:
    on two cores, 500 events per second leaves 4 ms of CPU per event for everything."""
    busy = used.pop("machine_busy")
    per_event = {f"cpu_ms_{name}": seconds * 1000 / events for name, seconds in used.items()}
    per_event["cpu_ms_total"] = sum(per_event.values())
    per_event["machine_busy"] = busy
    return per_event


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    common.flush_redis(common.REDIS_URL)
    url = await common.recreate_database(DATABASE)
    concord_metrics: dict[str, list[float]] = {}
    baseline: list[float] = []
    with common.PeakRss() as peaks, common.concord(url) as system:
        system.start_sandbox()
        system.start_api()
        system.start_workers(2, poll_delay_s=args.poll_delay)
        system.watch_all(peaks)
        await common.wait_for_workers(common.REDIS_URL, "concord:queue:health-check")
        await concord_run(system, min(200, args.events))  # warm-up: imports, pools, caches
        for run in range(args.runs):
            profilers = _start_profilers(system, args.profile) if run == 0 and args.profile else []
            meter = common.CpuMeter({n: p.pid for n, p in system.processes.items()})
            meter.start()
            measured = await concord_run(system, args.events)
            measured.update(_cpu_per_event(meter.stop(), args.events))
            for name, value in measured.items():
                concord_metrics.setdefault(name, []).append(value)
            _stop_profilers(profilers)
        system.stop("worker1", "worker2")
        noop = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.noop_worker",
                    str(args.poll_delay or DEFAULT_POLL_DELAY_S),
                ],
                env=system.env(),
                cwd=common.ROOT,
            )
            for _ in range(2)
        ]
        try:
            for i, proc in enumerate(noop):
                peaks.watch(f"noop_worker{i + 1}", proc.pid)
            await common.wait_for_workers(common.REDIS_URL, f"{QUEUE}:health-check")
            await baseline_run(common.REDIS_URL, min(200, args.events))
            for _ in range(args.runs):
                baseline.append(await baseline_run(common.REDIS_URL, args.events))
        finally:
            for proc in noop:
                proc.terminate()
                proc.wait(timeout=30)
    eps = concord_metrics["events_per_s"]
    ratios = [c / b for c, b in zip(eps, baseline, strict=True)]
    metrics = {**concord_metrics, "baseline_noop_jobs_per_s": baseline, "ratio": ratios}
    units = {
        "events_per_s": "events/s",
        "intake_per_s": "events/s",
        "ack_p99_ms": "ms",
        "seconds": "s",
        "sender_retries": "deliveries",
        "api_5xx": "responses",
        "baseline_noop_jobs_per_s": "jobs/s",
        "ratio": "x",
        "machine_busy": "share of cores",
        **{k: "ms CPU/event" for k in concord_metrics if k.startswith("cpu_ms_")},
    }
    common.print_table(
        f"end-to-end throughput, {args.events} events per run", common.stat_rows(metrics, units)
    )
    common.print_memory(peaks.peaks_mb)
    ratio = common.summary(ratios)["median"]
    median_eps = common.summary(eps)["median"]
    targets = {
        "ratio_at_least_0.5": ratio >= 0.5,
        "events_per_s_at_least_500": median_eps >= 500,
    }
    print(f"\ntargets: {targets}")  # noqa: T201
    return {
        "events_per_run": args.events,
        "runs": args.runs,
        "workers": 2,
        "worker_poll_delay_s": args.poll_delay or DEFAULT_POLL_DELAY_S,
        "metrics": {k: {"values": v, **common.summary(v)} for k, v in metrics.items()},
        "units": units,
        "ratio": ratio,
        "targets_met": targets,
        "peak_rss_mb": peaks.peaks_mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="300 events, 2 runs")
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--poll-delay", type=float, default=None, help="arq poll_delay for both sides' workers"
    )
    parser.add_argument("--profile", default=None, help="py-spy the API and a worker into DIR")
    args = parser.parse_args()
    if args.quick:
        args.events, args.runs = 300, 2
    result = asyncio.run(main_async(args))
    common.write_json("e2e_throughput", result, args.out)


if __name__ == "__main__":
    main()
