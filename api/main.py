"""The FastAPI application factory: intake and the control plane."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from api.errors import install_error_handlers
from api.routes import events, health, transactions, webhooks
from api.settings import ApiSettings
from lineage.db import make_engine, make_sessionmaker
from orchestrator.client.queue import queue_pool


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        engine = make_engine(settings.database_url, echo=settings.database_echo)
        arq = queue_pool(settings.redis_url)
        try:
            yield {
                "settings": settings,
                "sessionmaker": make_sessionmaker(engine),
                "arq": arq,
            }
        finally:
            await arq.aclose()
            await engine.dispose()

    app = FastAPI(
        title="Concord",
        version="0.1.0",
        summary="Control plane for subscription-to-cash integration.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for module in (health, webhooks, events, transactions):
        app.include_router(module.router)
    return app
