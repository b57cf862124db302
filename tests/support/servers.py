"""Real servers for a test: an ASGI app in a thread, or `streamlit run` in a child process."""

import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx
import uvicorn
from starlette.types import ASGIApp


@contextmanager
def serve_in_thread(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    startup_timeout_s: float = 10.0,
    shutdown_timeout_s: float = 10.0,
) -> Iterator[str]:
    """Run `app` under uvicorn in a daemon thread and yield its base URL, e.g. http://127.0.0.1:PORT."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Bind here and hand uvicorn the socket: picking a free port and binding it later would race
    # with anything else that picks the same port in between.
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((host, 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(app, lifespan="on", log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn:{port}", daemon=True
        )
        thread.start()
        try:
            _wait_started(server, thread, timeout_s=startup_timeout_s)
            url_host = f"[{host}]" if family == socket.AF_INET6 else host
            yield f"http://{url_host}:{port}"
        finally:
            server.should_exit = True
            thread.join(shutdown_timeout_s)
            if thread.is_alive():
                # A handler that never returns would hold a graceful shutdown forever.
                server.force_exit = True
                thread.join(shutdown_timeout_s)
    finally:
        sock.close()


def _wait_started(server: uvicorn.Server, thread: threading.Thread, *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive():
            # uvicorn logs the cause (lifespan failure, bad app) before its thread ends.
            raise RuntimeError("the test server stopped before it started; see the log above")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the test server did not start within {timeout_s} s")
        time.sleep(0.005)


@contextmanager
def running_streamlit(
    script: str | Path,
    *,
    port: int,
    args: Sequence[str] = (),
    env: Mapping[str, str],
    cwd: Path,
    startup_timeout_s: float = 30.0,
    stop_timeout_s: float = 10.0,
) -> Iterator[str]:
    """`streamlit run SCRIPT` headless on 127.0.0.1:PORT; yields its URL once it is healthy.

    The caller picks the port, since what it passes in `args` (a redirect URI) may need the URL.
    """
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true",
           "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false", *args]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    # A file, not a pipe: nobody reads a pipe while the test runs, and a full one would block
    # Streamlit mid-log.
    with tempfile.TemporaryFile() as output:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=dict(env), stdout=output, stderr=subprocess.STDOUT
        )
        try:
            _wait_healthy(proc, f"{url}/_stcore/health", output, timeout_s=startup_timeout_s)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(stop_timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_healthy(
    proc: subprocess.Popen[bytes], health_url: str, output: IO[bytes], *, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(health_url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            output.seek(0)
            raise RuntimeError(
                f"streamlit did not start:\n{output.read().decode(errors='replace')}"
            )
        time.sleep(0.2)
