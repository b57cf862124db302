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
from sqlalchemy import exc as sa_exc
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
    503: "The database is busy or unreachable; retry after Retry-After seconds.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these statuses, all in the one error shape."""
    return {s: {"model": ErrorBody, "description": _DESCRIPTIONS[s]} for s in statuses}


# Every guarded route can answer these; routers add them to each of their routes.
GUARDED = error_responses(401, 403, 422, 503)
MUTATING = error_responses(401, 403, 404, 409, 422, 429, 503)

# What a 503 for the database asks a client to wait. Long enough for a burst to drain from the
# pool, short enough that a webhook sender's own backoff, not this, sets the pace.
DATABASE_RETRY_AFTER_S = 5


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


async def _respond(
    request: Request,
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
    *,
    audit: bool = True,
) -> JSONResponse:
    try:
        if audit:
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


# SQLSTATE classes of a server that cannot take the work now: 08 connection exception,
# 53 insufficient resources (too many connections), 57P operator intervention (shutting down,
# starting up).
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P")
# SQLite's primary result codes for the same: SQLITE_BUSY, SQLITE_LOCKED, SQLITE_CANTOPEN.
_UNAVAILABLE_SQLITE_CODES = frozenset({5, 6, 14})


def database_unavailable(exc: BaseException) -> str | None:
    """The error code if `exc` means the database cannot serve now (a retry may work), else None.

    Anything else from the database (a constraint, a bad query, a missing table) stays a 500:
    retrying it would fail the same way.
    """
    if isinstance(exc, sa_exc.TimeoutError):
        # QueuePool's "connection timed out": every pooled connection is in use.
        return "database_busy"
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return "database_unavailable"
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATES):
            return "database_busy" if sqlstate.startswith("53") else "database_unavailable"
        sqlite_code = getattr(exc.orig, "sqlite_errorcode", None)
        # The low byte is the primary code; the rest says which kind (SQLITE_BUSY_SNAPSHOT...).
        primary = sqlite_code & 0xFF if isinstance(sqlite_code, int) else None
        if primary in _UNAVAILABLE_SQLITE_CODES:
            return "database_unavailable" if primary == 14 else "database_busy"
        return None
    if isinstance(exc, OSError) and _raised_opening_a_connection(exc):
        # asyncpg's connect lets refused, unresolvable and timed-out sockets out unwrapped.
        return "database_unavailable"
    return None


def _raised_opening_a_connection(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if str(tb.tb_frame.f_globals.get("__name__", "")).startswith("sqlalchemy.pool"):
            return True
        tb = tb.tb_next
    return False


_DATABASE_MESSAGES = {
    "database_busy": "the database is busy; retry after Retry-After seconds",
    "database_unavailable": "the database cannot be reached; retry after Retry-After seconds",
}


async def _database(request: Request, exc: Exception) -> JSONResponse:
    code = database_unavailable(exc)
    if code is None:
        return await _internal(request, exc)
    # The driver's own message only: SQLAlchemy's text of a DBAPIError carries the statement's
    # parameters, which may be a customer's data.
    cause = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    log.warning("answered 503 %s: %s: %s", code, type(cause).__name__, cause)
    return await _respond(
        request,
        503,
        code,
        _DATABASE_MESSAGES[code],
        {"retry_after_s": DATABASE_RETRY_AFTER_S},
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
        # The audit row needs the database that just failed: trying would only wait again.
        audit=False,
    )


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc)
    return await _respond(request, 500, "internal_error", "an internal error occurred")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    for error in _DOMAIN:
        app.add_exception_handler(error, _domain)
    # Checked before the catch-all; whatever is not an outage falls through to a 500.
    for database_error in (sa_exc.TimeoutError, sa_exc.DBAPIError, OSError):
        app.add_exception_handler(database_error, _database)
    app.add_exception_handler(Exception, _internal)
