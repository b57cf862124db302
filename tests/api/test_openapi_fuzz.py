"""schemathesis against the running app's OpenAPI, as an admin and as a viewer.

Every operation gets generated requests; there must be no server error, and every answer must
have a documented status, content type and schema.
"""

import asyncio
from collections.abc import Callable
from typing import Any, cast

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Err

from api.settings import ApiSettings
from lineage.enums import Role

MAX_EXAMPLES = 20
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Intake is driven by signatures and vendor envelopes; random bodies only prove it never
# answers 5xx (its owner's tests cover the shapes).
INTAKE = {"POST /v1/webhooks/stripe", "POST /v1/webhooks/hubspot", "POST /v1/events"}


@pytest.fixture
def api_settings(database_url: str, redis_url: str) -> ApiSettings:
    # The fuzzer makes hundreds of changes; the rate limit has its own test.
    return ApiSettings(database_url=database_url, redis_url=redis_url, mutation_burst=100_000)


def _runner(operation: Any, base_url: str, key: str) -> Callable[[], None]:
    checks = [not_a_server_error] if operation.label in INTAKE else CONFORMANCE

    @hypothesis.given(case=operation.as_strategy())
    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}, checks=checks
        )

    return cast(Callable[[], None], run)


def _fuzz(base_url: str, key: str) -> list[str]:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    failures: list[str] = []
    for result in schema.get_all_operations():
        # An operation the loader cannot read is a failure of the document itself.
        if isinstance(result, Err):
            failures.append(f"unreadable operation: {result.err()}")
            continue
        operation = result.ok()
        try:
            _runner(operation, base_url, key)()
        # schemathesis reports a FailureGroup, a BaseExceptionGroup rather than an Exception.
        except (Exception, BaseExceptionGroup) as exc:
            failures.append(f"{operation.label}: {exc}"[:3000])
    return failures


@pytest.mark.parametrize("role", [Role.ADMIN, Role.VIEWER])
async def test_openapi_conformance(api_url: str, api_keys: dict[Role, str], role: Role) -> None:
    failures = await asyncio.to_thread(_fuzz, api_url, api_keys[role])

    assert failures == []
