"""Bind the correlation ID of the transaction a request concerns, for every log line about it.

A request whose path names a transaction (`/v1/transactions/{id}...`, `/v1/lineage/{id}`) runs
with that ID bound. Intake learns the ID only when it has committed the new transaction, so for
`POST /v1/webhooks/...` and `POST /v1/events` the response start is held back until its (small
JSON) body shows the `correlation_id`; both are then sent with it bound, so the server's access
log line carries it too.
"""

import json
import re
from urllib.parse import unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lineage.correlation import bind_correlation_id

_TRANSACTION_PATH = re.compile(r"^/v1/(?:transactions|lineage)/([^/]+)")
_INTAKE_PREFIXES = ("/v1/webhooks/", "/v1/events")
# Intake answers are a few hundred bytes; anything larger is not one, and is not held.
_MAX_HELD_BODY = 64 * 1024


class CorrelationLogging:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        found = _TRANSACTION_PATH.match(path)
        if found:
            with bind_correlation_id(unquote(found.group(1))[:200]):
                await self.app(scope, receive, send)
        elif scope.get("method") == "POST" and path.startswith(_INTAKE_PREFIXES):
            await self.app(scope, receive, _IntakeSend(send))
        else:
            await self.app(scope, receive, send)


class _IntakeSend:
    """Holds the response start until the body names the transaction intake committed."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.start: Message | None = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
            return
        start, self.start = self.start, None
        if start is None:
            await self.send(message)
            return
        correlation_id = None
        body = message.get("body", b"")
        if message["type"] == "http.response.body" and len(body) <= _MAX_HELD_BODY:
            correlation_id = _correlation_id_of(body)
        if correlation_id is None:
            await self.send(start)
            await self.send(message)
            return
        with bind_correlation_id(correlation_id):
            await self.send(start)
            await self.send(message)


def _correlation_id_of(body: bytes) -> str | None:
    try:
        value = json.loads(body).get("correlation_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None
