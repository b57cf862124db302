"""The outside world in one ASGI app: each simulated system is mounted under its own prefix."""

from fastapi import APIRouter, FastAPI

from sandbox.erp import create_erp_app

health = APIRouter()


@health.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def create_sandbox_app() -> FastAPI:
    """All simulated systems with fresh state: the ERP under /erp (billing, CRM, ... to follow)."""
    app = FastAPI(title="Concord sandbox")
    app.include_router(health)
    app.mount("/erp", create_erp_app())
    return app
