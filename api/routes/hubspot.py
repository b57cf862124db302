import time
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Header, Request, Response, status
from pydantic import BaseModel

from api.deps import StateDep
from api.errors import ApiError
from api.intake import INTAKE_ERRORS, commit_event, incoming_event, parse_json, read_body
from api.schemas import IntakeResponse
from api.signatures import verify_hubspot_signature
from lineage.enums import System
from orchestrator.client import hubspot_events
from orchestrator.client.canonical import NotAnEvent

router = APIRouter(prefix="/v1/webhooks", tags=["intake"])


class HubSpotIntakeResponse(BaseModel):
    events: list[IntakeResponse]


@router.post(
    "/hubspot",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {
            "model": HubSpotIntakeResponse,
            "description": "Every event in the batch was a redelivery.",
        },
        **INTAKE_ERRORS,
    },
)
async def hubspot_webhook(
    request: Request,
    response: Response,
    state: StateDep,
    background: BackgroundTasks,
    x_hubspot_signature_v3: Annotated[str | None, Header()] = None,
    x_hubspot_request_timestamp: Annotated[str | None, Header()] = None,
) -> HubSpotIntakeResponse:
    """Store each event of a signed HubSpot batch with its transaction, then wake a worker."""
    settings = state["settings"]
    raw = await read_body(request, max_bytes=settings.max_body_bytes)
    verify_hubspot_signature(
        raw,
        method=request.method,
        uri=_signed_uri(request, settings.public_base_url),
        signature=x_hubspot_signature_v3,
        timestamp=x_hubspot_request_timestamp,
        secret=settings.hubspot_client_secret,
        tolerance_s=settings.webhook_tolerance_s,
        now=time.time(),
    )
    try:
        events = hubspot_events.batch(parse_json(raw))
        decisions = [hubspot_events.route(event) for event in events]
    except NotAnEvent as exc:
        raise ApiError(400, "not_an_event", str(exc)) from exc
    results: list[IntakeResponse] = []
    conflicts: list[str] = []
    for event, decision in zip(events, decisions, strict=True):
        try:
            results.append(
                await commit_event(
                    state["sessionmaker"],
                    state["arq"],
                    background,
                    incoming_event(
                        source=hubspot_events.HUBSPOT_SOURCE,
                        source_event_id=str(event["eventId"]),
                        event_type=hubspot_events.event_type(event),
                        payload=event,
                        decision=decision,
                        source_system=System.CRM,
                    ),
                )
            )
        except ApiError as exc:
            if exc.code != "event_id_conflict":
                raise
            conflicts.append(str(event["eventId"]))
    if conflicts:
        raise ApiError(
            409,
            "event_id_conflict",
            "events were already received with a different body",
            details={"event_ids": conflicts, "stored": len(results)},
        )
    if all(result.duplicate for result in results):
        response.status_code = status.HTTP_200_OK
    return HubSpotIntakeResponse(events=results)


def _signed_uri(request: Request, public_base_url: str) -> str:
    # Behind a proxy, HubSpot signed the public URL, not the one this process sees.
    if public_base_url:
        query = f"?{request.url.query}" if request.url.query else ""
        return f"{public_base_url.rstrip('/')}{request.url.path}{query}"
    return str(request.url)
