"""What every benchmark shares: statistics, peak memory, the printed table and JSON, and a
running Concord (sandbox, API and workers as separate processes on 127.0.0.1).

Benchmarks never import pytest; they start the system the way an operator would, through the
`concord` command, against a PostgreSQL database of their own and a Redis database number.
"""

import asyncio
import contextlib
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import redis
import redis.asyncio as aioredis

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent
# Same secret as the tests' factories: signed bodies come from the real Stripe library.
WEBHOOK_SECRET = "whsec_bench_secret"

PG_ADMIN_URL = os.environ.get(
    "CONCORD_BENCH_PG_ADMIN_URL",
    os.environ.get("CONCORD_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
)
REDIS_URL = os.environ.get("CONCORD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/6")


# --- statistics -----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); the value a reader can find in the raw data."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median with min and max over repetitions."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return {"median": median, "min": ordered[0], "max": ordered[-1], "n": len(ordered)}


# --- peak memory ----------------------------------------------------------------------------


class PeakRss:
    """Samples the resident memory of named processes in a thread and keeps each one's peak.

    Sampling misses a spike shorter than the interval; for this process the kernel's own
    high-water mark (ru_maxrss) is reported too, which misses nothing.
    """

    def __init__(self, interval_s: float = 0.1) -> None:
        self._procs: dict[str, psutil.Process] = {"bench": psutil.Process()}
        # name -> process-name prefix: every descendant of this process so named, summed.
        self._trees: dict[str, str] = {}
        self.peaks_mb: dict[str, float] = {}
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def watch(self, name: str, pid: int) -> None:
        self._procs[name] = psutil.Process(pid)

    def watch_descendants(self, name: str, prefix: str) -> None:
        """Sum every descendant whose name starts with prefix, e.g. a browser's many processes
        that come and go (shared pages are counted once per process: an upper bound)."""
        self._trees[name] = prefix

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        import resource

        self.peaks_mb["bench (ru_maxrss)"] = (
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        )

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def _sample(self) -> None:
        for name, proc in list(self._procs.items()):
            try:
                mb = proc.memory_info().rss / 2**20
            except psutil.Error:
                continue
            self.peaks_mb[name] = max(self.peaks_mb.get(name, 0.0), round(mb, 1))
        if not self._trees:
            return
        descendants = self._procs["bench"].children(recursive=True)
        for name, prefix in self._trees.items():
            total = 0
            for proc in descendants:
                try:
                    if proc.name().startswith(prefix):
                        total += proc.memory_info().rss
                except psutil.Error:
                    continue
            if total:
                self.peaks_mb[name] = max(self.peaks_mb.get(name, 0.0), round(total / 2**20, 1))


class CpuMeter:
    """CPU seconds (user + system) each named process and each server (every `postgres` and
    `redis-server` process on the machine) spent between two snapshots, and how busy the
    machine's cores were: what an event costs, and where, when the cores are the limit."""

    SERVERS = ("postgres", "redis-server")

    def __init__(self, processes: Mapping[str, int]) -> None:
        self._procs = {name: psutil.Process(pid) for name, pid in processes.items()}
        self._start: dict[str, float] = {}
        self._machine_start: Any = None

    def _read(self) -> dict[str, float]:
        seconds: dict[str, float] = {}
        for name, proc in {**self._procs, "bench": psutil.Process()}.items():
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                seconds[name] = t.user + t.system
        for proc in psutil.process_iter(["name", "cpu_times"]):
            name, t = proc.info["name"], proc.info["cpu_times"]
            if name in self.SERVERS and t is not None:
                # Per PID: a backend that ends between the snapshots drops out of both.
                seconds[f"{name}:{proc.pid}"] = t.user + t.system
        return seconds

    def start(self) -> None:
        self._start = self._read()
        self._machine_start = psutil.cpu_times()

    def stop(self) -> dict[str, float]:
        """Seconds per process (servers summed by name) and `machine_busy`, the share of all
        cores' time that was not idle."""
        end, machine = self._read(), psutil.cpu_times()
        used: dict[str, float] = {}
        for key, value in end.items():
            name = key.split(":")[0]
            used[name] = used.get(name, 0.0) + value - self._start.get(key, value)
        idle = (machine.idle + machine.iowait) - (
            self._machine_start.idle + self._machine_start.iowait
        )
        total = sum(machine) - sum(self._machine_start)
        used["machine_busy"] = 1 - idle / total if total else 0.0
        return used


# --- output ---------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    columns = list(rows[0])
    cells = [[_fmt(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    print(f"\n{title}\n{line}\n{'-' * len(line)}")  # noqa: T201
    for r in cells:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)))  # noqa: T201


def stat_rows(metrics: Mapping[str, Sequence[float]], unit: dict[str, str]) -> list[dict[str, Any]]:
    """One table row per metric: median, min and max of its repetitions."""
    rows = []
    for name, values in metrics.items():
        s = summary(values)
        rows.append(
            {
                "metric": name,
                "unit": unit.get(name, ""),
                "median": s["median"],
                "min": s["min"],
                "max": s["max"],
                "runs": int(s["n"]),
            }
        )
    return rows


def write_json(name: str, payload: dict[str, Any], out: str | None = None) -> Path:
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": name,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1m_at_end": os.getloadavg()[0],
            "python": platform.python_version(),
        },
        **payload,
    }
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    print(f"\nwrote {path}")  # noqa: T201
    return path


def print_memory(peaks_mb: dict[str, float]) -> None:
    print_table(
        "peak resident memory",
        [{"process": k, "peak_rss_mb": v} for k, v in sorted(peaks_mb.items())],
    )


# --- databases and Redis --------------------------------------------------------------------


def pg_url(database: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{database}"


async def recreate_database(database: str) -> str:
    """A fresh, migrated PostgreSQL database; returns its plain URL."""
    admin = await asyncpg.connect(pg_url("postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    url = pg_url(database)
    # Alembic runs its own event loop; keep it off ours.
    await asyncio.to_thread(_upgrade, url)
    return url


def _upgrade(url: str) -> None:
    from lineage.migrate import upgrade

    upgrade(url)


async def database_exists(database: str) -> bool:
    admin = await asyncpg.connect(pg_url("postgres"))
    try:
        return bool(await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database))
    finally:
        await admin.close()


def flush_redis(url: str = REDIS_URL) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


async def create_key(database_url: str, role: str = "viewer") -> str:
    from lineage.apikeys import create_key as make_key
    from lineage.db import make_engine, make_sessionmaker
    from lineage.enums import Role

    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine).begin() as session:
            _, key = await make_key(session, name="bench", role=Role(role))
    finally:
        await engine.dispose()
    return key


# --- a running system -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(
    url: str, *, timeout_s: float = 60.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before serving {url}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout_s}s")
        time.sleep(0.1)


@dataclass
class Concord:
    """Sandbox, API and workers as child processes, each with its own PID for RSS."""

    database_url: str
    redis_url: str
    sandbox_url: str = ""
    api_url: str = ""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    log_dir: Path = field(default_factory=lambda: RESULTS / "logs")

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "CONCORD_DATABASE_URL": self.database_url,
            "CONCORD_REDIS_URL": self.redis_url,
            "CONCORD_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "CONCORD_ERP_URL": f"{self.sandbox_url}/erp",
            "CONCORD_CRM_URL": f"{self.sandbox_url}/crm",
            "CONCORD_PROVISIONING_URL": f"{self.sandbox_url}/provisioning",
            "CONCORD_SUPPORT_URL": f"{self.sandbox_url}/support",
            "CONCORD_ANALYTICS_URL": f"{self.sandbox_url}/analytics",
            "CONCORD_OUTBOUND_ALLOWLIST": "127.0.0.1",
            # The benchmark measures Concord, not a politeness limit towards the ERP.
            "CONCORD_RATE_LIMITS": "{}",
            "CONCORD_LOG_LEVEL": "WARNING",
            **extra,
        }

    def spawn(self, name: str, args: list[str], **extra: str) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", *args],
            env=self.env(**extra),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        log.close()
        self.processes[name] = proc
        return proc

    def start_sandbox(self) -> None:
        port = free_port()
        proc = self.spawn("sandbox", ["concord", "sandbox", "--port", str(port)])
        self.sandbox_url = f"http://127.0.0.1:{port}"
        wait_http(f"{self.sandbox_url}/erp/_admin/ledger", proc=proc)

    def start_api(self, **extra: str) -> None:
        port = free_port()
        proc = self.spawn("api", ["concord", "api", "--port", str(port)], **extra)
        self.api_url = f"http://127.0.0.1:{port}"
        wait_http(f"{self.api_url}/healthz", proc=proc)

    def start_workers(
        self, count: int = 2, *, poll_delay_s: float | None = None, **extra: str
    ) -> None:
        """`concord worker` processes; poll_delay_s overrides CONCORD_POLL_DELAY_S."""
        if poll_delay_s is not None:
            extra = {**extra, "CONCORD_POLL_DELAY_S": str(poll_delay_s)}
        for i in range(count):
            args = ["concord", "worker", "--port", "0"]  # the kernel picks a free port
            self.spawn(f"worker{i + 1}", args, **extra)

    def stop(self, *names: str) -> None:
        chosen = [n for n in (names or tuple(self.processes)) if n in self.processes]
        for name in chosen:
            proc = self.processes[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name in chosen:
            proc = self.processes.pop(name)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def watch_all(self, peaks: PeakRss) -> None:
        for name, proc in self.processes.items():
            peaks.watch(name, proc.pid)


@contextmanager
def concord(database_url: str, redis_url: str = REDIS_URL) -> Iterator[Concord]:
    system = Concord(database_url, redis_url)
    try:
        yield system
    finally:
        system.stop()


async def wait_for_workers(redis_url: str, key: str, timeout_s: float = 60) -> None:
    """Until arq's health-check key for the queue appears: a worker has started and polls."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + timeout_s
        while not await client.exists(key):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no worker wrote {key} within {timeout_s}s")
            await asyncio.sleep(0.1)
    finally:
        await client.aclose()
    await asyncio.sleep(1.0)  # the second worker: both write one key; give it its start-up
