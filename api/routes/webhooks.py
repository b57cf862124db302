import time
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Header, Request, Response, status

from api.deps import StateDep
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
from api.signatures import verify_stripe_signature
from lineage.enums import System
from orchestrator.client import stripe_events
from orchestrator.client.canonical import NotAnEvent

router = APIRouter(prefix="/v1/webhooks", tags=["intake"])


@router.post(
    "/stripe",
    status_code=status.HTTP_202_ACCEPTED,
    responses={200: {"model": IntakeResponse, "description": DUPLICATE}, **INTAKE_ERRORS},
)
async def stripe_webhook(
    request: Request,
    response: Response,
    state: StateDep,
    background: BackgroundTasks,
    stripe_signature: Annotated[str | None, Header()] = None,
) -> IntakeResponse:
    """Store a signed Stripe event and its transaction, then wake a worker."""
    settings = state["settings"]
    raw = await read_body(request, max_bytes=settings.max_body_bytes)
    verify_stripe_signature(
        raw,
        stripe_signature,
        secret=settings.stripe_webhook_secret,
        tolerance_s=settings.webhook_tolerance_s,
        now=time.time(),
    )
    body = parse_json(raw)
    try:
        event_id, event_type = stripe_events.event_identity(body)
        decision = stripe_events.route(body)
    except NotAnEvent as exc:
        raise ApiError(400, "not_an_event", str(exc)) from exc
    result = await commit_event(
        state["sessionmaker"],
        state["arq"],
        background,
        incoming_event(
            source=stripe_events.STRIPE_SOURCE,
            source_event_id=event_id,
            event_type=event_type,
            payload=body,
            decision=decision,
            source_system=System.BILLING,
        ),
    )
    if result.duplicate:
        response.status_code = status.HTTP_200_OK
    return result
