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
from lineage.enums import System
from orchestrator.client import cloudevents_intake
from orchestrator.client.canonical import NotAnEvent

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
) -> IntakeResponse:
    """Store a CloudEvents 1.0 structured event of a canonical type; duplicates by source + id."""
    raw = await read_body(request, max_bytes=state["settings"].max_body_bytes)
    # Stored as sent: the library fills in a missing `time`, which would make redeliveries differ.
    payload = parse_json(raw)
    try:
        attributes, data = cloudevents_intake.parse(raw)
        decision = cloudevents_intake.route(attributes["type"], data)
    except NotAnEvent as exc:
        raise ApiError(400, "not_an_event", str(exc)) from exc
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
