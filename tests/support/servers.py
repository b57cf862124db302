"""Serve an ASGI app over real HTTP for a test, on a port only that test holds."""

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

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
