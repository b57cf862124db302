from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api import prometheus
from api.deps import StateDep

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus exposition."}},
)
async def metrics(state: StateDep) -> Response:
    """Prometheus text exposition: transactions, open exceptions and the SLA figures (computed
    at most every CONCORD_METRICS_MAX_AGE_S, 15 s by default), and the API's own answer times
    per route and its event loop's lag (live)."""

    async def read() -> bytes:
        # Its own session, as SharedReadings asks: a reading may outlive the request.
        async with state["sessionmaker"]() as session:
            return await prometheus.render(session, state["settings"])

    body, _age = await state["metrics_cache"].get("metrics", read)
    body += generate_latest(state["process_registry"])
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
