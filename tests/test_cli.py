"""The `concord` command as an operator runs it: real processes, real signals."""

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.apikeys import hash_key
from lineage.models import ApiKey
from tests.support.ports import free_port_run

KEY_PATTERN = re.compile(r"^ck_[0-9a-f]{8}_[A-Za-z0-9_-]{43}$")


def concord(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "concord", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextmanager
def running(*args: str, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "concord", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def wait_for(url: str, process: subprocess.Popen[str], timeout_s: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


async def test_keys_create_prints_the_key_alone_and_stores_its_hash(
    database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    result = concord(
        "keys",
        "create",
        "--role",
        "ops",
        "--name",
        "alice",
        env={"CONCORD_DATABASE_URL": database_url},
    )

    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert result.stdout == f"{key}\n"
    assert KEY_PATTERN.match(key)
    async with sessionmaker() as session:
        [row] = list(await session.scalars(select(ApiKey)))
    assert (row.name, row.role, row.key_hash) == ("alice", "ops", hash_key(key))
    assert key not in repr(row.__dict__)


async def test_revoked_keys_are_refused(database_url: str, api_url: str) -> None:
    env = {"CONCORD_DATABASE_URL": database_url}
    key = concord("keys", "create", "--role", "viewer", "--name", "bob", env=env).stdout.strip()
    auth = {"Authorization": f"Bearer {key}"}
    before = httpx.get(f"{api_url}/v1/transactions", headers=auth)
    listed = concord("keys", "list", env=env).stdout
    key_id = next(line.split("\t")[0] for line in listed.splitlines() if "\tbob\t" in line)

    revoked = concord("keys", "revoke", key_id, env=env)
    again = concord("keys", "revoke", key_id, env=env)
    after = httpx.get(f"{api_url}/v1/transactions", headers=auth)

    assert before.status_code == 200
    assert revoked.returncode == 0
    assert again.returncode == 1
    assert after.status_code == 401


def test_keys_create_on_an_unmigrated_database_says_what_to_do(tmp_path: Path) -> None:
    result = concord(
        "keys",
        "create",
        "--role",
        "ops",
        "--name",
        "x",
        env={"CONCORD_DATABASE_URL": f"sqlite:///{tmp_path / 'new.db'}"},
    )

    assert result.returncode == 2
    assert result.stdout == ""
    assert "concord db upgrade" in result.stderr


def test_keys_create_refuses_an_unknown_role(tmp_path: Path) -> None:
    result = concord(
        "keys",
        "create",
        "--role",
        "root",
        "--name",
        "x",
        env={"CONCORD_DATABASE_URL": f"sqlite:///{tmp_path / 'new.db'}"},
    )

    assert result.returncode == 2
    assert "root" in result.stderr


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_api_serves_on_its_port_and_stops_cleanly(
    tmp_path: Path, redis_url: str, stop: signal.Signals
) -> None:
    database_url = f"sqlite:///{tmp_path / 'api.db'}"
    assert concord("db", "upgrade", env={"CONCORD_DATABASE_URL": database_url}).returncode == 0
    port = free_port_run()
    env = {"CONCORD_DATABASE_URL": database_url, "CONCORD_REDIS_URL": redis_url}

    with running("api", "--host", "127.0.0.1", "--port", str(port), env=env) as process:
        ready = wait_for(f"http://127.0.0.1:{port}/readyz", process)
        process.send_signal(stop)
        code = process.wait(timeout=30)

    assert ready.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}
    assert code == 0


def test_worker_exposes_metrics_and_stops_cleanly_on_sigterm(
    tmp_path: Path, redis_url: str
) -> None:
    database_url = f"sqlite:///{tmp_path / 'worker.db'}"
    assert concord("db", "upgrade", env={"CONCORD_DATABASE_URL": database_url}).returncode == 0
    port = free_port_run()
    env = {"CONCORD_DATABASE_URL": database_url, "CONCORD_REDIS_URL": redis_url}

    with running("worker", "--host", "127.0.0.1", "--port", str(port), env=env) as process:
        metrics = wait_for(f"http://127.0.0.1:{port}/metrics", process)
        time.sleep(1)  # let arq install its signal handlers and start polling
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
        logged = process.stderr.read() if process.stderr else ""

    assert metrics.status_code == 200
    assert "python_info" in metrics.text
    assert code == 0
    # uvicorn[standard] brings uvloop; the worker's round trips run on it (docs/performance.md).
    assert "worker running on the uvloop event loop" in logged


def test_embedded_redis_needs_its_password_and_stops() -> None:
    import redis

    from concord.embedded_redis import EmbeddedRedis

    with EmbeddedRedis() as server:
        assert redis.Redis.from_url(server.url).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=server.port).ping()
        port = server.port
    with pytest.raises(redis.ConnectionError):
        redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1).ping()


@pytest.mark.parametrize(
    "moment",
    [
        # run_supervised's pause before it rebuilds the worker: no event loop is running.
        "restarting the worker in",
        # arq's own connection retries inside the rebuilt worker's event loop.
        "retries remaining",
    ],
)
def test_a_worker_that_lost_its_redis_still_stops_on_sigterm(tmp_path: Path, moment: str) -> None:
    from concord.embedded_redis import EmbeddedRedis

    database_url = f"sqlite:///{tmp_path / 'worker.db'}"
    assert concord("db", "upgrade", env={"CONCORD_DATABASE_URL": database_url}).returncode == 0
    port = free_port_run()
    log = tmp_path / "worker.log"
    with EmbeddedRedis() as redis_server, log.open("w") as out:
        env = {"CONCORD_DATABASE_URL": database_url, "CONCORD_REDIS_URL": redis_server.url}
        process = subprocess.Popen(
            [sys.executable, "-m", "concord", "worker", "--port", str(port)],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        # The Redis is gone now; wait for the worker to have noticed, then for the moment.
        deadline = time.monotonic() + 60
        while "lost Redis" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        seen = log.read_text().count(moment)
        while log.read_text().count(moment) == seen and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert code == 0, log.read_text()[-2000:]
