from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api import prometheus
from api.deps import SessionDep, StateDep

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus exposition."}},
)
async def metrics(session: SessionDep, state: StateDep) -> Response:
    """Prometheus text exposition: transactions, open exceptions and the SLA figures."""
    body = await prometheus.render(session, state["settings"])
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
