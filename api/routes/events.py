from fastapi import APIRouter, BackgroundTasks, Request, Response, status

from api.deps import IngestDep, StateDep
from api.errors import ApiError
from api.intake import (
    DUPLICATE,
    INTAKE_ERRORS,
    commit_event,
    incoming_event,
    parse_json,
    read_body,
)
from api.schemas import IntakeResponse
from api.schemas_intake import BatchResponse, EventResult
from api.usage_intake import BATCH_TYPE, CLOUDEVENT_TYPES, commit_batch, commit_usage
from lineage.enums import System
from orchestrator.client import cloudevents_intake
from orchestrator.client.canonical import NotAnEvent
from orchestrator.client.usage import Metered

router = APIRouter(prefix="/v1/events", tags=["intake"])


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    responses={200: {"model": IntakeResponse, "description": DUPLICATE}, **INTAKE_ERRORS},
)
async def ingest_cloudevent(
    request: Request,
    response: Response,
    state: StateDep,
    background: BackgroundTasks,
    _principal: IngestDep,
) -> IntakeResponse | EventResult | BatchResponse:
    """Store a CloudEvents 1.0 structured event of a canonical type; duplicates by source + id.

    A usage event (`com.concord.usage.recorded`) starts no transaction of its own: it is
    counted into its subscription's summary for the period (see `usage_key`). A batch
    (`application/cloudevents-batch+json`, up to 1000 events) is stored all or nothing.
    """
    raw = await read_body(
        request,
        max_bytes=state["settings"].max_body_bytes,
        content_types=(*CLOUDEVENT_TYPES, BATCH_TYPE),
    )
    if request.headers.get("content-type", "").split(";")[0].strip().lower() == BATCH_TYPE:
        return await commit_batch(state["sessionmaker"], state["arq"], background, raw)
    # Stored as sent: the library fills in a missing `time`, which would make redeliveries differ.
    payload = parse_json(raw)
    try:
        attributes, data = cloudevents_intake.parse(raw)
        decision = cloudevents_intake.route(attributes["type"], data)
    except NotAnEvent as exc:
        raise ApiError(400, "not_an_event", str(exc)) from exc
    if isinstance(decision, Metered):
        accepted = await commit_usage(state["sessionmaker"], attributes, payload, decision)
        if accepted.duplicate:
            response.status_code = status.HTTP_200_OK
        return accepted
    result = await commit_event(
        state["sessionmaker"],
        state["arq"],
        background,
        incoming_event(
            source=attributes["source"],
            source_event_id=attributes["id"],
            event_type=attributes["type"],
            payload=payload,
            decision=decision,
            source_system=System.CONCORD,
        ),
    )
    if result.duplicate:
        response.status_code = status.HTTP_200_OK
    return result
