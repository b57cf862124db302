"""Fixtures shared by the orchestrator tests: the whole system over HTTP, or the engine's
dependencies with scripted targets."""

from collections.abc import AsyncIterator, Callable

import pytest
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.enums import Role
from orchestrator.client.queue import queue_pool
from orchestrator.deps import WorkerDeps
from orchestrator.settings import OrchestratorSettings
from tests.fakes import Fakes, ScriptedErp, fake_deps
from tests.support.concord_http import Concord, concord_system


@pytest.fixture
async def concord(
    database_url: str,
    redis_url: str,
    sandbox_url: str,
    worker_settings: OrchestratorSettings,
    api_keys: dict[Role, str],
) -> AsyncIterator[Concord]:
    """The API, the sandbox and a burst worker on the test's database, seen by a viewer key."""
    async with concord_system(
        database_url, redis_url, sandbox_url, worker_settings, api_keys[Role.VIEWER]
    ) as system:
        yield system


@pytest.fixture
async def make_deps(
    database_url: str, redis_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Callable[..., WorkerDeps]]:
    pools: list[ArqRedis] = []

    def build(erp: ScriptedErp, **overrides: object) -> WorkerDeps:
        pool = queue_pool(redis_url)
        pools.append(pool)
        options: dict[str, object] = {"retry_base_s": 0.0, "retry_cap_s": 0.0, **overrides}
        settings = OrchestratorSettings.model_validate(
            {"database_url": database_url, "redis_url": redis_url, **options}
        )
        return fake_deps(settings, sessionmaker, pool, Fakes(erp=erp))

    yield build
    for pool in pools:
        await pool.aclose()
