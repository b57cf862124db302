"""Bulk replay by filter: a dry run first, then a capped job whose set must match it."""

from sqlalchemy.ext.asyncio import AsyncSession

from api import audit_trail
from api.errors import ApiError
from api.schemas import TransactionRead
from api.schemas_actions import (
    BulkReplayCreate,
    BulkReplayDetail,
    BulkReplayItemRead,
    BulkReplayPreview,
    BulkReplayRead,
    TransactionFilterIn,
)
from lineage import bulk, queries
from lineage.apikeys import Principal
from lineage.bulk_states import BulkItemOutcome
from lineage.clock import utc_now
from lineage.models import BulkReplay

SAMPLE_SIZE = 10


def transaction_filter(f: TransactionFilterIn) -> queries.TransactionFilter:
    return queries.TransactionFilter(
        states=tuple(f.state),
        workflow=f.workflow,
        source_system=f.source,
        target_system=f.target,
        since=f.since,
        until=f.until,
        business_key=f.business_key,
        min_amount_minor=f.min_amount_minor,
        max_amount_minor=f.max_amount_minor,
        currency=f.currency,
        updated_until=f.updated_until,
    )


async def dry_run(
    session: AsyncSession, bulk_in: BulkReplayCreate, *, max_allowed: int
) -> BulkReplayPreview:
    pinned = bulk_in.filter
    if pinned.updated_until is None:
        # Pinned by the server's clock, not the client's: a client clock running ahead would let
        # failures after the dry run into the set, and the start would be refused for them.
        pinned = pinned.model_copy(update={"updated_until": utc_now()})
    count, held, sample = await bulk.preview(
        session, transaction_filter(pinned), sample=SAMPLE_SIZE
    )
    return BulkReplayPreview(
        filter=pinned,
        count=count,
        max_allowed=max_allowed,
        already_held=held,
        sample=[TransactionRead.model_validate(t) for t in sample],
    )


async def create(
    session: AsyncSession, bulk_in: BulkReplayCreate, *, principal: Principal, max_allowed: int
) -> BulkReplayRead:
    if bulk_in.reason is None:
        raise ApiError(422, "reason_required", "a bulk replay needs a reason")
    if bulk_in.expected_count is None:
        raise ApiError(
            422,
            "expected_count_required",
            "run with dry_run=true first and send its count as expected_count",
        )
    ids = await bulk.target_ids(session, transaction_filter(bulk_in.filter), limit=max_allowed + 1)
    if len(ids) > max_allowed:
        raise ApiError(
            422,
            "blast_radius_exceeded",
            f"the filter matches more than {max_allowed} transactions; narrow it",
            details={"max_allowed": max_allowed},
        )
    if len(ids) != bulk_in.expected_count:
        raise ApiError(
            409,
            "count_mismatch",
            "the filter now matches a different set than the dry run; preview again",
            details={"expected_count": bulk_in.expected_count, "count": len(ids)},
        )
    filter_doc = bulk_in.filter.model_dump(mode="json", exclude_defaults=True)
    job = await bulk.create(
        session,
        name=bulk_in.name or f"bulk replay by {principal.name}",
        requested_by=principal.name,
        role=principal.role.value,
        reason=bulk_in.reason,
        filter_doc=filter_doc,
        correlation_ids=ids,
        now=utc_now(),
    )
    await audit_trail.record_success(
        session,
        principal,
        action="bulk_replay.create",
        target=f"bulk_replay:{job.id}",
        reason=bulk_in.reason,
        after={"state": job.state.value, "count": len(ids)},
        detail={"filter": filter_doc, "name": job.name},
    )
    return await read(session, job)


async def read(session: AsyncSession, job: BulkReplay) -> BulkReplayRead:
    progress = await bulk.counts(session, job.id)
    done = sum(n for outcome, n in progress.items() if outcome is not BulkItemOutcome.PENDING)
    return BulkReplayRead.model_validate(job).model_copy(
        update={"progress": progress, "done": done}
    )


async def detail(session: AsyncSession, bulk_id: int) -> BulkReplayDetail:
    job = await bulk.get(session, bulk_id)
    base = await read(session, job)
    return BulkReplayDetail(
        **base.model_dump(),
        items=[BulkReplayItemRead.model_validate(i) for i in await bulk.items(session, bulk_id)],
    )


async def cancel(session: AsyncSession, bulk_id: int, *, principal: Principal) -> BulkReplayRead:
    before = (await bulk.get(session, bulk_id)).state.value
    job = await bulk.cancel(session, bulk_id, actor=principal.name, now=utc_now())
    await audit_trail.record_success(
        session,
        principal,
        action="bulk_replay.cancel",
        target=f"bulk_replay:{bulk_id}",
        before={"state": before},
        after={"state": job.state.value},
    )
    return await read(session, job)
