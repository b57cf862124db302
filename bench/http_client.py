"""What an HTTP request costs the client's CPU: Concord's connector client (httpx, through the
outbound guard, as a worker calls the ERP) against aiohttp as the baseline, in the same process,
against the same sandbox, at 1, 20 (a worker's max_jobs) and 64 (the e2e sender) requests in
flight. The server runs in its own process, so only the client's CPU is counted.

Why it is here: the e2e sender on httpx cost 6.7-8.3 ms of CPU per event, a quarter of the whole
machine's (docs/performance.md, "Session 15"), which is why bench/load.py sends with aiohttp;
and the connectors' share of a worker's CPU is the ratio below.

    python -m bench.http_client [--requests 2000] [--runs 3] [--quick]
"""

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from bench import common
from orchestrator.outbound import guarded_client

CONCURRENCY = (1, 20, 64)


async def _lanes(count: int, concurrency: int, one: Callable[[], Awaitable[None]]) -> float:
    """CPU milliseconds per request of `count` requests, `concurrency` at a time."""
    left = count

    async def lane() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await one()

    start = time.process_time()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return (time.process_time() - start) * 1000 / count


async def httpx_ms(url: str, count: int, concurrency: int) -> float:
    async with guarded_client(["127.0.0.1"], max_connections=concurrency) as client:

        async def one() -> None:
            (await client.get(url)).raise_for_status()

        await one()  # the connection pool and the guard's first look, outside the count
        return await _lanes(count, concurrency, one)


async def aiohttp_ms(url: str, count: int, concurrency: int) -> float:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            async with session.get(url) as response:
                response.raise_for_status()
                await response.read()

        await one()
        return await _lanes(count, concurrency, one)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    metrics: dict[str, list[float]] = {}
    with common.concord("") as system:
        system.start_sandbox()
        url = f"{system.sandbox_url}/healthz"
        for _ in range(args.runs):
            for c in CONCURRENCY:
                # Alternated within each run, so a slower minute hits both clients.
                concord_ms = await httpx_ms(url, args.requests, c)
                baseline_ms = await aiohttp_ms(url, args.requests, c)
                metrics.setdefault(f"httpx_cpu_ms_c{c}", []).append(concord_ms)
                metrics.setdefault(f"aiohttp_cpu_ms_c{c}", []).append(baseline_ms)
                metrics.setdefault(f"ratio_c{c}", []).append(concord_ms / baseline_ms)
    units = {k: "x" if k.startswith("ratio") else "ms CPU/request" for k in metrics}
    common.print_table("client CPU per request", common.stat_rows(metrics, units))
    return {
        "requests_per_run": args.requests,
        "runs": args.runs,
        "metrics": {k: common.summary(v) for k, v in metrics.items()},
        "units": units,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="500 requests, 2 runs")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.quick:
        args.requests, args.runs = 500, 2
    common.write_json("http_client", asyncio.run(main_async(args)), args.out)


if __name__ == "__main__":
    main()
