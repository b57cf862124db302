from fastapi import APIRouter

from api.deps import SessionDep, ViewerDep
from api.errors import GUARDED, error_responses
from api.schemas import TransactionRead
from api.schemas_views import EdgeRead, LineageGraphRead, NodeRead
from lineage import graph

router = APIRouter(prefix="/v1/lineage", tags=["lineage"], responses=GUARDED)


@router.get("/{correlation_id}", responses=error_responses(404))
async def get_lineage(
    correlation_id: str, session: SessionDep, _principal: ViewerDep
) -> LineageGraphRead:
    """The transaction as a graph: source records, event, transaction, runs, steps and the
    records they created or found in each target, with times on the edges; plus the other
    transactions of the same subscription or invoice in business order."""
    g = await graph.lineage_graph(session, correlation_id)
    return LineageGraphRead(
        correlation_id=correlation_id,
        nodes=[NodeRead.model_validate(n) for n in g.nodes],
        edges=[EdgeRead.model_validate(e) for e in g.edges],
        related=[TransactionRead.model_validate(t) for t in g.related],
    )
