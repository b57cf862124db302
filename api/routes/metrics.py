from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api import prometheus
from api.deps import SessionDep, StateDep

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus exposition."}},
)
async def metrics(session: SessionDep, state: StateDep) -> Response:
    """Prometheus text exposition: transactions, open exceptions, the SLA figures and the
    API's own answer times per route."""
    body = await prometheus.render(session, state["settings"])
    body += generate_latest(state["request_registry"])
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
