"""The FastAPI application factory: intake and the control plane."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from api import loop_lag
from api.background import Background
from api.bulk_runner import BulkRunner
from api.errors import install_error_handlers
from api.logging_middleware import CorrelationLogging
from api.middleware import RejectNul
from api.oidc import OidcVerifier
from api.ratelimit import TokenBuckets
from api.request_metrics import RequestTiming, request_histogram
from api.routes import (
    audit,
    events,
    exceptions,
    health,
    hubspot,
    keys,
    lineage,
    me,
    metrics,
    operations,
    reconciliation,
    replays,
    search,
    sla,
    transactions,
    webhooks,
)
from api.settings import ApiSettings
from api.shared_readings import SharedReadings
from lineage.db import make_engine, make_sessionmaker
from orchestrator.client.queue import queue_pool

log = logging.getLogger(__name__)

ROUTERS = (
    health,
    metrics,
    webhooks,
    hubspot,
    events,
    transactions,
    lineage,
    search,
    exceptions,
    replays,
    sla,
    reconciliation,
    audit,
    keys,
    me,
    operations,
)


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()
    # This app's own metrics (answer times, loop lag): several apps in one process (the tests)
    # keep separate counts.
    process_registry = CollectorRegistry(auto_describe=True)
    loop_lag_seconds = loop_lag.lag_histogram(process_registry)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        engine = make_engine(
            settings.database_url,
            echo=settings.database_echo,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
            pool_timeout_s=settings.database_pool_timeout_s,
        )
        arq = queue_pool(settings.redis_url)
        sessionmaker = make_sessionmaker(engine)
        runner = BulkRunner(
            sessionmaker,
            arq,
            batch_size=settings.bulk_replay_batch,
            lease_s=settings.bulk_replay_lease_s,
        )
        background = Background()
        lag_watcher = asyncio.create_task(loop_lag.watch(loop_lag_seconds), name="loop-lag")
        sla_cache = SharedReadings[BaseModel](
            settings.sla_max_age_s, keep_warm_s=settings.sla_keep_warm_s
        )
        sla_keeper = asyncio.create_task(sla_cache.keep_warm(), name="sla-keeper")
        try:
            try:
                # Bulk replays a dead process left behind carry on here.
                await runner.resume_unfinished()
            except Exception:
                # A database outage must not stop the API starting; the next start resumes them.
                log.warning("could not resume unfinished bulk replays", exc_info=True)
            yield {
                "settings": settings,
                "sessionmaker": sessionmaker,
                "arq": arq,
                "limiter": TokenBuckets(
                    rate_per_minute=settings.mutation_rate_per_minute,
                    burst=settings.mutation_burst,
                ),
                "bulk_runner": runner,
                "background": background,
                "oidc": OidcVerifier(settings) if settings.oidc_enabled else None,
                "process_registry": process_registry,
                "metrics_cache": SharedReadings[bytes](settings.metrics_max_age_s, capacity=1),
                "sla_cache": sla_cache,
            }
        finally:
            for task in (lag_watcher, sla_keeper):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await runner.close()
            # A reconciliation cancelled here marks its run failed ("cancelled: ...").
            await background.close()
            await arq.aclose()
            await engine.dispose()

    app = FastAPI(
        title="Concord",
        version="0.1.0",
        summary="Control plane for subscription-to-cash integration.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(RejectNul)
    app.add_middleware(CorrelationLogging)
    # Outermost: a caller's traceparent becomes the current trace context for the request, so
    # intake hands it on to the worker's jobs (a span is recorded only if an SDK is set up).
    app.add_middleware(OpenTelemetryMiddleware, exclude_spans=["receive", "send"])
    # Outside everything else, so that its clock covers the other middleware's time too.
    app.add_middleware(RequestTiming, histogram=request_histogram(process_registry))
    for module in ROUTERS:
        app.include_router(module.router)
    return app
