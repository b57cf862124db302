"""Fixtures shared by the orchestrator tests that drive the whole system over HTTP."""

from collections.abc import AsyncIterator

import pytest

from lineage.enums import Role
from orchestrator.settings import OrchestratorSettings
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
