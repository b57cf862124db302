from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import ViewerDep
from api.errors import GUARDED
from api.read_session import ReadSessionDep
from api.schemas import TransactionRead
from api.schemas_views import SearchHitRead, SearchResults
from lineage import search as lineage_search

router = APIRouter(prefix="/v1/search", tags=["search"], responses=GUARDED)


@router.get("")
async def search(
    session: ReadSessionDep,
    _principal: ViewerDep,
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=255,
            description="Any ID: correlation, event, customer, subscription, invoice, or any "
            "system's external ID (Stripe in_/sub_/cus_, an ERP document, a CRM deal)",
        ),
    ],
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> SearchResults:
    """Transactions an identifier belongs to, newest first, with how each one matched."""
    query = q.strip()
    hits = await lineage_search.search(session, query, limit=limit) if query else []
    return SearchResults(
        query=query,
        items=[
            SearchHitRead(
                transaction=TransactionRead.model_validate(hit.transaction),
                matched_by=hit.matched_by,
            )
            for hit in hits
        ],
    )
