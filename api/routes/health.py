import asyncio

from fastapi import APIRouter, Response
from sqlalchemy import text

from api.deps import StateDep
from api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> Health:
    """The process is up and serving."""
    return Health(status="ok")


@router.get("/readyz", responses={503: {"model": Health, "description": "A dependency is down."}})
async def readyz(state: StateDep, response: Response) -> Health:
    """Ready when the database and Redis both answer."""
    checks: dict[str, str] = {}
    try:
        async with state["sessionmaker"]() as session:
            await asyncio.wait_for(session.execute(text("SELECT 1")), timeout=3)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        await asyncio.wait_for(state["arq"].ping(), timeout=3)
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    health = Health(
        status="ok" if all(v == "ok" for v in checks.values()) else "unavailable", checks=checks
    )
    if health.status != "ok":
        response.status_code = 503
    return health
