from collections.abc import Awaitable, Callable, Hashable
from datetime import datetime, timedelta
from typing import Annotated, Literal, TypeVar

from fastapi import APIRouter, Header, Query, Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import State, StateDep, ViewerDep
from api.durations import DURATION_PATTERN, parse_duration
from api.errors import GUARDED, ApiError
from api.schemas_views import SlaBucket, SlaFiguresRead, SlaSummary, SlaTimeseries
from lineage import sla
from lineage.clock import utc_now

router = APIRouter(prefix="/v1/sla", tags=["sla"], responses=GUARDED)
M = TypeVar("M", bound=BaseModel)

MAX_WINDOW = timedelta(days=31)
MAX_BUCKETS = 2000
_DEFINITIONS = (
    "Per transaction received in the window: met = posted (or resolved) within the workflow's "
    "SLA target; breached = done late, or not done and older than the target; attainment = "
    "met / (met + breached); overdue = still active past the target; money at risk = amounts "
    "not done past the target; percentiles (nearest rank) over posted end-to-end latency.\n\n"
    "Figures are shared: a request within CONCORD_SLA_MAX_AGE_S (15 s) of a reading of the "
    "same parameters gets that reading, whose moment is `until` and whose age in seconds is "
    "the `Age` header. `Cache-Control: no-cache` asks for figures read after the request "
    "arrived. Parameters asked for within CONCORD_SLA_KEEP_WARM_S (1 h) are read again in "
    "the background before their reading expires, so such requests do not wait for one."
)
CacheControl = Annotated[
    str | None,
    Header(description="`no-cache`: figures read after this request arrived, not shared ones"),
]


async def _shared(
    state: State,
    key: Hashable,
    read: Callable[[AsyncSession, datetime], Awaitable[M]],
    model: type[M],
    *,
    cache_control: str | None,
    response: Response,
) -> M:
    """The shared reading for `key`, made by `read(session, now)` when due. The reading opens
    its own session: the keeper makes it again after the request has gone."""

    async def reading() -> M:
        now = utc_now()
        async with state["sessionmaker"]() as session:
            return await read(session, now)

    fresh = "no-cache" in (cache_control or "").lower()
    value, age = await state["sla_cache"].get(key, reading, fresh=fresh)
    if not isinstance(value, model):  # each key names its route, so this cannot differ
        raise TypeError(f"{key!r} holds {type(value).__name__}, not {model.__name__}")
    response.headers["Age"] = str(int(age))
    return value


@router.get("/summary", description=_DEFINITIONS)
async def sla_summary(
    state: StateDep,
    _principal: ViewerDep,
    response: Response,
    window: Annotated[str, Query(pattern=DURATION_PATTERN)] = "24h",
    group_by: Annotated[Literal["workflow", "target"], Query()] = "workflow",
    cache_control: CacheControl = None,
) -> SlaSummary:
    """SLA attainment, latency percentiles, breaches, overdue, open exceptions, money at risk."""
    span = parse_duration(window, name="window", maximum=MAX_WINDOW)
    settings = state["settings"]

    async def read(session: AsyncSession, now: datetime) -> SlaSummary:
        groups = await sla.summary(
            session,
            since=now - span,
            until=now,
            group_by=group_by,
            targets=settings.sla_targets_s,
            default_target_s=settings.sla_default_target_s,
            now=now,
        )
        return SlaSummary(
            window=window,
            group_by=group_by,
            since=now - span,
            until=now,
            groups=[SlaFiguresRead.model_validate(g) for g in groups],
        )

    key = ("summary", window, group_by)
    return await _shared(
        state, key, read, SlaSummary, cache_control=cache_control, response=response
    )


@router.get("/timeseries", description=_DEFINITIONS)
async def sla_timeseries(
    state: StateDep,
    _principal: ViewerDep,
    response: Response,
    window: Annotated[str, Query(pattern=DURATION_PATTERN)] = "24h",
    bucket: Annotated[str, Query(pattern=DURATION_PATTERN)] = "5m",
    workflow: Annotated[str | None, Query(max_length=64)] = None,
    cache_control: CacheControl = None,
) -> SlaTimeseries:
    """The same figures per time bucket (by received time), empty buckets included."""
    span = parse_duration(window, name="window", maximum=MAX_WINDOW)
    step = parse_duration(bucket, name="bucket", maximum=MAX_WINDOW)
    if span / step > MAX_BUCKETS:
        raise ApiError(422, "too_many_buckets", f"window / bucket may be at most {MAX_BUCKETS}")
    settings = state["settings"]

    async def read(session: AsyncSession, now: datetime) -> SlaTimeseries:
        series = await sla.timeseries(
            session,
            since=now - span,
            until=now,
            bucket=step,
            targets=settings.sla_targets_s,
            default_target_s=settings.sla_default_target_s,
            now=now,
            workflow=workflow,
        )
        return SlaTimeseries(
            window=window,
            bucket=bucket,
            workflow=workflow,
            since=now - span,
            until=now,
            buckets=[
                SlaBucket(start=start, figures=SlaFiguresRead.model_validate(fig))
                for start, fig in series
            ],
        )

    key = ("timeseries", window, bucket, workflow)
    return await _shared(
        state, key, read, SlaTimeseries, cache_control=cache_control, response=response
    )
