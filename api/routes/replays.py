from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Path, Query, Response

from api import bulk_replay
from api.deps import SessionDep, StateDep, ViewerDep, mutation
from api.errors import GUARDED, error_responses
from api.schemas import INT64_MAX
from api.schemas_actions import (
    BulkReplayCreate,
    BulkReplayDetail,
    BulkReplayPreview,
    BulkReplayRead,
)
from lineage import bulk
from lineage.apikeys import Principal
from lineage.enums import Role

router = APIRouter(prefix="/v1/replays", tags=["replays"], responses=GUARDED)


@router.post(
    "",
    status_code=202,
    responses={
        200: {"model": BulkReplayPreview, "description": "The dry run: nothing was replayed."},
        **error_responses(409, 429),
    },
)
async def create_bulk_replay(
    bulk_in: BulkReplayCreate,
    response: Response,
    session: SessionDep,
    state: StateDep,
    background: BackgroundTasks,
    principal: Annotated[Principal, Depends(mutation(Role.OPS, action="bulk_replay.create"))],
) -> BulkReplayRead | BulkReplayPreview:
    """Replay every settled transaction the filter matches, as a named job with progress.

    First send dry_run=true: it returns the count, a sample and how many targets already hold
    the record. Then send the same filter with expected_count set to that count and a reason.
    """
    max_allowed = state["settings"].bulk_replay_max
    if bulk_in.dry_run:
        response.status_code = 200
        return await bulk_replay.dry_run(session, bulk_in, max_allowed=max_allowed)
    job = await bulk_replay.create(session, bulk_in, principal=principal, max_allowed=max_allowed)
    # Started after the commit, so the runner sees the job and its items.
    background.add_task(state["bulk_runner"].start, job.id)
    return job


@router.get("")
async def list_bulk_replays(
    session: SessionDep,
    _principal: ViewerDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[BulkReplayRead]:
    """Bulk replay jobs, newest first, with their progress."""
    return [
        await bulk_replay.read(session, job) for job in await bulk.list_jobs(session, limit=limit)
    ]


@router.get("/{bulk_id}", responses=error_responses(404))
async def get_bulk_replay(
    bulk_id: Annotated[int, Path(ge=1, le=INT64_MAX)], session: SessionDep, _principal: ViewerDep
) -> BulkReplayDetail:
    """A bulk replay job with each transaction's outcome."""
    return await bulk_replay.detail(session, bulk_id)


@router.post(
    "/{bulk_id}/cancel",
    responses=error_responses(404, 409, 429),
)
async def cancel_bulk_replay(
    bulk_id: Annotated[int, Path(ge=1, le=INT64_MAX)],
    session: SessionDep,
    principal: Annotated[Principal, Depends(mutation(Role.OPS, action="bulk_replay.cancel"))],
) -> BulkReplayRead:
    """Stop a job between transactions; those already replayed stay replayed."""
    return await bulk_replay.cancel(session, bulk_id, principal=principal)
