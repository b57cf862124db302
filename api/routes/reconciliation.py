"""Reconciliation runs and the mismatches they find: run a period, read, filter, export, resolve.

Include with `app.include_router(reconciliation.router)`. Settings come from
`app.state.reconciliation_settings` when the app factory sets it, else from the environment
(CONCORD_RECONCILIATION_*), read once per app.
"""

import csv
import io
import logging
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, BackgroundTasks, Depends, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api import audit_trail
from api.deps import SessionDep, StateDep, ViewerDep, mutation
from api.errors import GUARDED, ApiError, error_responses
from api.mismatch_replay import replay_mismatch
from api.schemas_actions import ReplayRead
from lineage.apikeys import Principal
from lineage.clock import utc_now
from lineage.enums import Role
from lineage.models import Mismatch, ReconciliationRun
from orchestrator.client.queue import try_enqueue_wakeup
from reconciliation import repository
from reconciliation.errors import (
    MismatchNotFound,
    MismatchNotLinked,
    MismatchNotOpen,
    RunFailed,
    RunInProgress,
    RunNotFound,
)
from reconciliation.service import begin_period, finish_period
from reconciliation.settings import ReconciliationSettings
from reconciliation.snapshots import Kind
from reconciliation.sources import PERIOD_PATTERN
from reconciliation.states import MismatchStatus

log = logging.getLogger(__name__)

router = APIRouter(tags=["reconciliation"], responses=GUARDED)

Period = Annotated[str, StringConstraints(pattern=PERIOD_PATTERN)]
Note = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    period: Period


class RunRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    period: str
    state: str
    stage: str
    progress: int = Field(description="Percent done, 0..100")
    trigger: str
    requested_by: str | None
    tolerance_minor: int
    snapshot_dir: str | None
    input_rows: dict[str, int] | None
    kinds_evaluated: list[str] | None
    summary: dict[str, Any] | None = Field(
        description='{kind: {"count": n, "amount_minor": {currency: amount at risk}}}'
    )
    found_count: int
    new_count: int
    auto_resolved_count: int
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    heartbeat_at: datetime | None = Field(
        description="Last sign of life of a running run (docs/reconciliation.md)"
    )


class RefRead(BaseModel):
    system: str
    object_type: str
    external_id: str


class ReplayRunRef(BaseModel):
    correlation_id: str
    run_number: int


class MismatchRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    fingerprint: str
    kind: str
    status: str
    period: str | None
    system: str
    source_system: str | None
    source_id: str | None
    source_amount_minor: int | None
    source_currency: str | None
    source_status: str | None
    target_system: str | None
    target_id: str | None
    target_amount_minor: int | None
    target_currency: str | None
    target_status: str | None
    amount_at_risk_minor: int
    currency: str | None
    # GET /v1/transactions/{correlation_id} and /v1/lineage/{correlation_id} lead from here.
    correlation_ids: list[str]
    refs: list[RefRead]
    first_run_id: int
    last_run_id: int
    first_seen_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    resolution_note: str | None
    resolved_run_id: int | None
    # The last replay started from this mismatch, and the runs it opened.
    last_replay_at: datetime | None = None
    last_replay_by: str | None = None
    last_replay_runs: list[ReplayRunRef] | None = None


class AmountTotal(BaseModel):
    currency: str | None
    count: int
    amount_at_risk_minor: int


class MismatchPage(BaseModel):
    items: list[MismatchRead]
    next_cursor: str | None
    # Over every mismatch the filter matches, not just this page.
    totals: list[AmountTotal]


class ResolveCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Note


class MismatchReplayCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Shorter than a replay's own reason: each replay's reason names the mismatch too.
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=900)]


class MismatchReplayRead(BaseModel):
    mismatch: MismatchRead
    replays: list[ReplayRead]


async def get_settings(request: Request) -> ReconciliationSettings:
    # async so that FastAPI calls it on the event loop, not in its thread pool (api/deps.py).
    settings = getattr(request.app.state, "reconciliation_settings", None)
    if not isinstance(settings, ReconciliationSettings):
        settings = ReconciliationSettings()
        request.app.state.reconciliation_settings = settings
    return settings


SettingsDep = Annotated[ReconciliationSettings, Depends(get_settings)]
FinanceRun = Annotated[Principal, Depends(mutation(Role.FINANCE, action="reconciliation.run"))]
FinanceResolve = Annotated[Principal, Depends(mutation(Role.FINANCE, action="mismatch.resolve"))]
# Issue #6: finance or ops may replay what a mismatch links to (the transaction replay route
# stays ops-only, as DESIGN.md's roles say); the same safety checks apply either way.
OpsReplay = Annotated[
    Principal, Depends(mutation(Role.FINANCE, Role.OPS, action="mismatch.replay"))
]


@router.post(
    "/v1/reconciliation/runs",
    status_code=201,
    responses={
        202: {
            "description": "Started (`Prefer: respond-async`): the run is working; GET its "
            "Location for progress.",
            "model": RunRead,
        },
        409: {"description": "The period is being reconciled."},
        502: {"description": "A system could not be read."},
    },
)
async def create_run(
    run_in: RunCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    state: StateDep,
    principal: FinanceRun,
    settings: SettingsDep,
    prefer: Annotated[str | None, Header(description="`respond-async`: answer 202 at once")] = None,
) -> RunRead:
    """Reconcile a period now and answer the finished run (GET it meanwhile for progress).

    With `Prefer: respond-async` (RFC 7240) the answer comes as soon as the run has begun:
    a caller with a short timeout (the dashboard) follows its progress instead of waiting.
    """
    sessionmaker = request.state.sessionmaker
    answer_at_once = _respond_async(prefer)
    try:
        run_id = await begin_period(
            sessionmaker, settings, period=run_in.period, trigger="api", requested_by=principal.name
        )
        if answer_at_once:
            state["background"].spawn(
                _finish(sessionmaker, settings, run_id, run_in.period),
                name=f"reconciliation:{run_id}",
            )
        else:
            await finish_period(sessionmaker, settings, run_id, period=run_in.period)
    except RunInProgress as exc:
        raise ApiError(409, "run_in_progress", str(exc), details={"run_id": exc.run_id}) from exc
    except RunFailed as exc:
        raise ApiError(
            502, "reconciliation_failed", str(exc), details={"run_id": exc.run_id}
        ) from exc
    run = await repository.get_run(session, run_id)
    detail: dict[str, Any] = {"period": run.period}
    if answer_at_once:
        response.status_code = 202
        response.headers["Location"] = f"/v1/reconciliation/runs/{run_id}"
        response.headers["Preference-Applied"] = "respond-async"
        detail["answered"] = "at start"
    else:
        detail.update(found=run.found_count, new=run.new_count)
    await audit_trail.record_success(
        session,
        principal,
        action="reconciliation.run",
        target=f"reconciliation_run:{run_id}",
        detail=detail,
    )
    return RunRead.model_validate(run)


def _respond_async(prefer: str | None) -> bool:
    """Whether a Prefer header asks for respond-async (RFC 7240: comma-separated, with params)."""
    if not prefer:
        return False
    return any(p.split(";", 1)[0].strip().lower() == "respond-async" for p in prefer.split(","))


async def _finish(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: ReconciliationSettings,
    run_id: int,
    period: str,
) -> None:
    try:
        await finish_period(sessionmaker, settings, run_id, period=period)
    except RunFailed as exc:
        # Recorded on the run, where whoever follows it reads it.
        log.warning("reconciliation run failed", extra={"run_id": run_id, "error": exc.error})
    except Exception:
        log.exception("reconciliation run stopped", extra={"run_id": run_id})


@router.get("/v1/reconciliation/runs", responses={200: {"description": "Newest first."}})
async def list_runs(
    session: SessionDep,
    _principal: ViewerDep,
    period: Period | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[RunRead]:
    query = select(ReconciliationRun).order_by(ReconciliationRun.id.desc()).limit(limit)
    if period is not None:
        query = query.where(ReconciliationRun.period == period)
    return [RunRead.model_validate(r) for r in await session.scalars(query)]


@router.get("/v1/reconciliation/runs/{run_id}", responses={404: {"description": "No such run."}})
async def get_run(run_id: int, session: SessionDep, _principal: ViewerDep) -> RunRead:
    try:
        return RunRead.model_validate(await repository.get_run(session, run_id))
    except RunNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from exc


_LISTS = {"refs", "correlation_ids", "last_replay_runs"}
_CSV_COLUMNS = [f for f in MismatchRead.model_fields if f not in _LISTS]


def _csv(rows: list[Mismatch]) -> Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*_CSV_COLUMNS, "correlation_ids", "refs"])
    for row in rows:
        item = MismatchRead.model_validate(row)
        refs = " ".join(f"{r.system}:{r.object_type}:{r.external_id}" for r in item.refs)
        writer.writerow(
            [*(getattr(item, c) for c in _CSV_COLUMNS), " ".join(item.correlation_ids), refs]
        )
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="mismatches.csv"'},
    )


@router.get(
    "/v1/mismatches",
    response_model=MismatchPage,
    responses={
        200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with format=csv"},
        **error_responses(400),
    },
)
async def list_mismatches(
    session: SessionDep,
    _principal: ViewerDep,
    kind: Kind | None = None,
    status: MismatchStatus | None = None,
    period: Period | None = None,
    system: Annotated[str | None, Query(max_length=24, description="erp, crm, ...")] = None,
    min_amount_minor: Annotated[int | None, Query(ge=0)] = None,
    max_amount_minor: Annotated[int | None, Query(ge=0)] = None,
    currency: Annotated[str | None, Query(pattern=r"^[A-Za-z]{3}$")] = None,
    run_id: Annotated[int | None, Query(description="Last seen by this run")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> MismatchPage | Response:
    """Mismatches, largest id first, with the amount at risk totalled per currency.

    format=csv exports every mismatch the filter matches (no paging)."""
    flt = repository.MismatchFilter(
        kind=kind,
        status=status,
        period=period,
        system=system,
        min_amount_minor=min_amount_minor,
        max_amount_minor=max_amount_minor,
        currency=currency,
        run_id=run_id,
    )
    if format == "csv":
        rows, _ = await repository.list_mismatches(session, flt, limit=None)
        return _csv(rows)
    rows, next_cursor = await repository.list_mismatches(session, flt, limit=limit, cursor=cursor)
    totals = await repository.totals(session, flt)
    return MismatchPage(
        items=[MismatchRead.model_validate(r) for r in rows],
        next_cursor=next_cursor,
        totals=[AmountTotal(currency=c, count=n, amount_at_risk_minor=a) for c, n, a in totals],
    )


@router.get("/v1/mismatches/{mismatch_id}", responses={404: {"description": "No such mismatch."}})
async def get_mismatch(
    mismatch_id: int, session: SessionDep, _principal: ViewerDep
) -> MismatchRead:
    mismatch = await session.get(Mismatch, mismatch_id)
    if mismatch is None:
        raise ApiError(404, "not_found", f"mismatch {mismatch_id} does not exist")
    return MismatchRead.model_validate(mismatch)


@router.post(
    "/v1/mismatches/{mismatch_id}/resolve",
    responses={404: {"description": "No such mismatch."}, 409: {"description": "Not open."}},
)
async def resolve_mismatch(
    mismatch_id: int,
    resolve_in: ResolveCreate,
    session: SessionDep,
    principal: FinanceResolve,
) -> MismatchRead:
    """Close an open mismatch by hand; the note says why it is acceptable or how it was fixed."""
    try:
        mismatch = await repository.resolve(
            session, mismatch_id, by=principal.name, note=resolve_in.note, now=utc_now()
        )
    except MismatchNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from exc
    except MismatchNotOpen as exc:
        raise ApiError(409, "mismatch_not_open", str(exc), details={"status": exc.status}) from exc
    await audit_trail.record_success(
        session,
        principal,
        action="mismatch.resolve",
        target=f"mismatch:{mismatch_id}",
        reason=resolve_in.note,
        before={"status": MismatchStatus.OPEN.value},
        after={"status": mismatch.status},
        detail={"kind": mismatch.kind, "amount_at_risk_minor": mismatch.amount_at_risk_minor},
    )
    return MismatchRead.model_validate(mismatch)


@router.post(
    "/v1/mismatches/{mismatch_id}/replay",
    status_code=202,
    responses={
        404: {"description": "No such mismatch."},
        409: {
            "description": "Not open, linked to no transaction, or a transaction is busy or "
            "cannot be replayed."
        },
    },
)
async def replay_from_mismatch(
    mismatch_id: int,
    replay_in: MismatchReplayCreate,
    session: SessionDep,
    state: StateDep,
    background: BackgroundTasks,
    principal: OpsReplay,
) -> MismatchReplayRead:
    """Replay every transaction linked to an open mismatch, with the checks and audit of
    `POST /v1/transactions/{id}/replay`; the next reconciliation run auto-resolves the mismatch
    if the replay fixed it."""
    try:
        mismatch, replays = await replay_mismatch(
            session, mismatch_id, reason=replay_in.reason, principal=principal
        )
    except MismatchNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from exc
    except MismatchNotOpen as exc:
        raise ApiError(409, "mismatch_not_open", str(exc), details={"status": exc.status}) from exc
    except MismatchNotLinked as exc:
        raise ApiError(409, "mismatch_not_linked", str(exc)) from exc
    for replay in replays:
        # After the commit (the session dependency commits before the response is sent).
        background.add_task(try_enqueue_wakeup, state["arq"], replay.correlation_id)
    return MismatchReplayRead(mismatch=MismatchRead.model_validate(mismatch), replays=replays)
