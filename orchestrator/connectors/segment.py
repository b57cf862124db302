"""The analytics port over Segment's HTTP Tracking API (`POST /v1/track`).

Segment has no read API, so there is nothing to look a call up by after an ambiguous outcome.
It needs none: Segment deduplicates by messageId, and the messageId is the call's idempotency
key (`correlation_id:step`), so a retry of the same step sends the same messageId and the
event is kept once, however many times it was sent.
"""

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from lineage.enums import System
from orchestrator.connectors.http import HttpAdapter
from orchestrator.connectors.ports import CallContext, TargetRecord

# Segment refuses longer messageIds; a longer key is hashed, still the same on every attempt.
MAX_MESSAGE_ID = 100


@dataclass(frozen=True, slots=True)
class TrackEvent:
    """One track call: `user_id` is the billing customer ID, `external_id` Concord's own."""

    user_id: str
    event: str
    external_id: str
    properties: dict[str, object] = field(default_factory=dict)
    # When it happened; None: when Segment receives it.
    timestamp: datetime | None = None


def message_id(ctx: CallContext) -> str:
    key = ctx.idempotency_key
    if len(key) <= MAX_MESSAGE_ID:
        return key
    return f"sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"{body.get('error', '?')}: {body.get('message', '')}"
    except (ValueError, AttributeError):
        return response.text[:500]


def _iso(moment: datetime) -> str:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


class SegmentAnalytics:
    """Track calls to a Segment source, authenticated by its write key (HTTP Basic user name).

    Only `track` exists. A repeat is safe (deduplicated by messageId), which is why there is no
    `find_*`: the step that calls it is retried by posting again, never by looking up.
    """

    def __init__(
        self,
        base_url: str,
        *,
        write_key: str,
        timeout_s: float = 10.0,
        client: httpx.AsyncClient | None = None,
        allow: Sequence[str] | None = None,
    ) -> None:
        # Segment's Basic scheme: the write key as the user name, an empty password.
        token = base64.b64encode(f"{write_key}:".encode()).decode()
        self._http = HttpAdapter(
            "Segment",
            base_url,
            timeout_s=timeout_s,
            client=client,
            allow=allow,
            detail=_detail,
            default_headers={"Authorization": f"Basic {token}"} if write_key else {},
        )

    async def track(self, event: TrackEvent, *, ctx: CallContext) -> TargetRecord:
        """Send the event with messageId = ctx's idempotency key; the record's id is that ID."""
        msg_id = message_id(ctx)
        body: dict[str, Any] = {
            "userId": event.user_id,
            "event": event.event,
            "properties": dict(event.properties),
            "messageId": msg_id,
            # Segment keeps any context fields; these let its events be traced back to Concord.
            "context": {
                "library": {"name": "concord"},
                "externalId": event.external_id,
                "correlationId": ctx.correlation_id,
            },
        }
        if event.timestamp is not None:
            body["timestamp"] = _iso(event.timestamp)
        action = "POST /v1/track"
        response = await self._http.send("POST", "/v1/track", action=action, ctx=ctx, json=body)
        if response.status_code != 200:
            raise self._http.error(response, action)
        answer = self._http.json(response, action)
        if not isinstance(answer, dict) or answer.get("success") is not True:
            raise self._http.protocol_error(response, action, "without success: true")
        return TargetRecord(
            system=System.ANALYTICS,
            object_type="track",
            record_id=msg_id,
            external_id=event.external_id,
            http_status=response.status_code,
        )

    async def aclose(self) -> None:
        await self._http.aclose()
