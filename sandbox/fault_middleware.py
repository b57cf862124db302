"""Apply a FaultController's decisions to one system's HTTP calls, and serve /_admin/faults."""

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.faults import FaultController, FaultSpecError

# (status, message, reason) -> the vendor's own error body for that status.
ErrorBody = Callable[[int, str, str], dict[str, Any]]


def route_path(scope: Scope) -> str:
    """The path inside this app: a mount's prefix (in root_path) is not part of it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


# True in the task of a request whose response the fault drops on purpose. uvicorn then logs
# "ASGI callable returned without completing response." at ERROR from that same task, which in
# the demo's output reads like a bug in the sandbox; _DroppedResponseLog says what it is instead.
_DROPPING: ContextVar[bool] = ContextVar("sandbox_dropping_response", default=False)
_UVICORN_COMPLAINT = "ASGI callable returned without completing response"
DROPPED_MESSAGE = "injected fault drop_after_commit: the write was committed and its response cut"


class _DroppedResponseLog(logging.Filter):
    """Rewrites uvicorn's complaint about a response this module cut into an INFO line naming
    the fault; the same complaint about any other response is left as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _DROPPING.get() and record.getMessage().startswith(_UVICORN_COMPLAINT):
            record.msg, record.args = DROPPED_MESSAGE, ()
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        return True


_DROPPED_RESPONSE_LOG = _DroppedResponseLog()
# uvicorn's server log; addFilter keeps one instance however many apps are built.
logging.getLogger("uvicorn.error").addFilter(_DROPPED_RESPONSE_LOG)

_EXEMPT = frozenset({"_admin", "healthz", "docs", "openapi.json"})


def operation_at(index: int) -> Callable[[str], str | None]:
    """Name calls by their index-th path segment (the record type or resource).

    Admin and health paths are exempt: they answer None and are never faulted.
    """

    def operation(path: str) -> str | None:
        parts = [p for p in path.split("/") if p]
        if not parts or parts[0] in _EXEMPT:
            return None
        return parts[index] if len(parts) > index else parts[-1]

    return operation


_READS = frozenset({"GET", "HEAD", "OPTIONS"})


class FaultMiddleware:
    """Latency, outages, rate limits, error statuses, hangs and commit-then-drop, in that order."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        system: str,
        controller: FaultController,
        error_body: ErrorBody,
        operation_of: Callable[[str], str | None],
    ) -> None:
        self.app = app
        self.system = system
        self.controller = controller
        self.error_body = error_body
        self.operation_of = operation_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._call(scope, receive, send)
        except ClientDisconnect:
            # The caller gave up (its timeout, on a loaded machine) before the system read its
            # body: nobody is left to answer, and it is no server error worth a traceback.
            return

    async def _call(self, scope: Scope, receive: Receive, send: Send) -> None:
        operation = self.operation_of(route_path(scope)) if scope["type"] == "http" else None
        if operation is None:
            await self.app(scope, receive, send)
            return
        decision = self.controller.decide(self.system, operation)
        if decision.latency_s:
            await asyncio.sleep(decision.latency_s)
        # A 422 refuses what a request asks to store; a vendor never answers a read with it.
        refused_read = decision.status == 422 and scope["method"] in _READS
        if decision.status is not None and not refused_read:
            message = f"injected fault: {decision.reason} on {self.system}.{operation}"
            body = self.error_body(decision.status, message, decision.reason)
            headers = {}
            if decision.retry_after_s is not None:
                headers["Retry-After"] = str(decision.retry_after_s)
            response = JSONResponse(body, status_code=decision.status, headers=headers)
            await response(scope, receive, send)
            return
        if decision.hang_s is not None:
            # Nothing is written: the call is held until the client gives up (or hang_s passes).
            await _until_disconnect(receive, decision.hang_s)
            await JSONResponse(self.error_body(504, "injected hang", "hang"), 504)(
                scope, receive, send
            )
            return
        # Only a write has something to commit; a read under this fault is answered normally.
        if decision.drop_after_commit and scope["method"] not in _READS:
            _DROPPING.set(True)
            await self.app(scope, receive, _dropping(send))
            return
        await self.app(scope, receive, send)


async def _until_disconnect(receive: Receive, limit_s: float) -> None:
    async def wait() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wait(), limit_s)


def _dropping(send: Send) -> Send:
    """A send that promises a body and never delivers it, so uvicorn cuts the connection.

    The handler has run and committed; the client only sees a transport error. uvicorn closes
    the socket, which is the point, and logs it (rewritten by _DroppedResponseLog).
    """

    async def dropping_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"64"), (b"content-type", b"application/json")],
                }
            )
        # Every body message is swallowed.

    return dropping_send


def faults_router(controller: FaultController) -> APIRouter:
    """GET reads the sandbox-wide SPEC; POST {"faults": SPEC} replaces it ("" clears it)."""
    router = APIRouter(prefix="/_admin", tags=["admin"])

    def describe() -> dict[str, Any]:
        plan = controller.plan
        return {"faults": plan.spec, "seed": plan.seed, "rules": [r.as_json() for r in plan.rules]}

    @router.get("/faults")
    async def read_faults() -> dict[str, Any]:
        return describe()

    @router.post("/faults", response_model=None)
    async def replace_faults(request: Request) -> dict[str, Any] | JSONResponse:
        try:
            body = json.loads(await request.body())
            spec = body["faults"]
            if not isinstance(spec, str):
                raise TypeError("faults must be a string")
            controller.replace(spec)
        except (ValueError, KeyError, TypeError) as exc:
            # FaultSpecError is a ValueError; the old plan stays in force.
            detail = (
                str(exc)
                if isinstance(exc, FaultSpecError)
                else f"expected {{'faults': SPEC}}: {exc}"
            )
            return JSONResponse({"error": {"code": "invalid_faults", "message": detail}}, 400)
        return describe()

    return router
