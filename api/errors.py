"""One error shape for every failure: {"error": {"code", "message", "details"}}.

Every handler here also audits a failed mutating call of an admitted caller (api.audit_trail),
so the audit log holds what was refused as well as what was done.
"""

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.audit_trail import record_failure
from api.schemas import ErrorBody
from lineage.errors import (
    ApiKeyNotFound,
    BulkReplayFinished,
    BulkReplayNotFound,
    ExceptionNotFound,
    InvalidCursor,
    NotReplayable,
    TransactionBusy,
    TransactionNotFound,
)

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers


_DESCRIPTIONS = {
    400: "A malformed input, e.g. a cursor this API did not issue.",
    401: "No credentials, an unknown or revoked API key, or an invalid OpenID Connect token.",
    403: "The key's role may not do this.",
    404: "Not found.",
    409: "Conflicts with the current state (see error.code).",
    422: "The request does not match the schema, or a rule refused it (see error.code).",
    429: "Too many changes from this API key; retry after Retry-After seconds.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these statuses, all in the one error shape."""
    return {s: {"model": ErrorBody, "description": _DESCRIPTIONS[s]} for s in statuses}


# Every guarded route can answer these; routers add them to each of their routes.
GUARDED = error_responses(401, 403, 422)
MUTATING = error_responses(401, 403, 404, 409, 422, 429)


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


async def _respond(
    request: Request,
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    try:
        await record_failure(request, status=status, code=code)
    except Exception:
        # The refused call changed nothing; answering it matters more than its audit row.
        log.exception("could not audit a failed call")
    return JSONResponse(
        error_body(code, message, details), status_code=status, headers=dict(headers or {}) or None
    )


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return await _respond(request, exc.status_code, exc.code, exc.message, exc.details, exc.headers)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    return await _respond(
        request,
        422,
        "invalid_request",
        "the request does not match the schema",
        {"errors": errors},
    )


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return await _respond(request, exc.status_code, code, str(exc.detail), headers=exc.headers)


# Domain errors of lineage, by the status and code a client sees.
_DOMAIN: dict[type[Exception], tuple[int, str]] = {
    TransactionNotFound: (404, "not_found"),
    ExceptionNotFound: (404, "not_found"),
    BulkReplayNotFound: (404, "not_found"),
    ApiKeyNotFound: (404, "not_found"),
    InvalidCursor: (400, "invalid_cursor"),
    TransactionBusy: (409, "transaction_busy"),
    NotReplayable: (409, "not_replayable"),
    BulkReplayFinished: (409, "bulk_replay_finished"),
}


async def _domain(request: Request, exc: Exception) -> JSONResponse:
    status, code = _DOMAIN[type(exc)]
    details = {"state": exc.state} if isinstance(exc, TransactionBusy | BulkReplayFinished) else {}
    return await _respond(request, status, code, str(exc), details)


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc)
    return await _respond(request, 500, "internal_error", "an internal error occurred")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    for error in _DOMAIN:
        app.add_exception_handler(error, _domain)
    app.add_exception_handler(Exception, _internal)
