"""What jobs and workflows are given; arq's untyped ctx is read here and nowhere else."""

from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from orchestrator.mappings import Mappings
from orchestrator.ratelimit import TokenBucket
from orchestrator.settings import OrchestratorSettings
from orchestrator.targets import Analytics, Billing, Crm, ErpLedger, Provisioning, Support


@dataclass(frozen=True, slots=True)
class WorkerDeps:
    settings: OrchestratorSettings
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: ArqRedis
    erp: ErpLedger
    crm: Crm
    billing: Billing
    provisioning: Provisioning
    support: Support
    analytics: Analytics
    limiter: TokenBucket
    mappings: Mappings


def get_deps(ctx: dict[str, Any]) -> WorkerDeps:
    deps = ctx["deps"]
    assert isinstance(deps, WorkerDeps)
    return deps
