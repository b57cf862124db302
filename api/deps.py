"""Request-scoped dependencies: the session that owns the commit, and the caller's role."""

from collections.abc import AsyncIterator
from typing import Annotated, TypedDict

from arq.connections import ArqRedis
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.background import Background
from api.bulk_runner import BulkRunner
from api.errors import ApiError
from api.oidc import OidcVerifier, TokenRejected, looks_like_api_key
from api.ratelimit import TokenBuckets, retry_after_header
from api.read_session import autocommit_sessionmaker
from api.settings import ApiSettings
from api.shared_readings import SharedReadings
from lineage import apikeys, audit
from lineage.apikeys import Principal
from lineage.enums import Role


class State(TypedDict):
    settings: ApiSettings
    sessionmaker: async_sessionmaker[AsyncSession]
    arq: ArqRedis
    limiter: TokenBuckets
    bulk_runner: BulkRunner
    # Work an answer started and the process still owes (reconciliation runs answered at once).
    background: Background
    # None when OIDC is off (no CONCORD_OIDC_ISSUER): only API keys are accepted.
    oidc: OidcVerifier | None
    # The API process's own metrics, live on /metrics: answer times per route
    # (api/request_metrics.py) and event-loop lag (api/loop_lag.py).
    process_registry: CollectorRegistry
    metrics_cache: SharedReadings[bytes]
    # The SLA routes' figures, per set of query parameters.
    sla_cache: SharedReadings[BaseModel]


async def get_state(request: Request) -> State:
    # async, though it awaits nothing: FastAPI runs a plain `def` dependency in its thread pool,
    # a hop to a worker thread and back on every request (docs/performance.md, "Session 18").
    return State(
        settings=request.state.settings,
        sessionmaker=request.state.sessionmaker,
        arq=request.state.arq,
        limiter=request.state.limiter,
        bulk_runner=request.state.bulk_runner,
        background=request.state.background,
        oidc=getattr(request.state, "oidc", None),
        process_registry=request.state.process_registry,
        metrics_cache=request.state.metrics_cache,
        sla_cache=request.state.sla_cache,
    )


StateDep = Annotated[State, Depends(get_state)]


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.state.sessionmaker() as session:
        try:
            yield session
        except Exception:
            await session.rollback()
            raise
        await session.commit()


# scope="function": the commit happens before the response is sent, not after.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]

_bearer = HTTPBearer(
    auto_error=False,
    description="A Concord API key (`Bearer ck_...`) or, when OIDC is configured, a JWT from "
    "the identity provider",
)

READERS = frozenset({Role.VIEWER, Role.EXECUTIVE, Role.FINANCE, Role.OPS, Role.ADMIN})


async def _deny(
    request: Request,
    *,
    status: int,
    code: str,
    message: str,
    actor: str,
    role: str | None,
    headers: dict[str, str] | None = None,
    reason: str | None = None,
) -> ApiError:
    # Denials are audited in their own transaction: the request's own work is rolled back.
    async with request.state.sessionmaker.begin() as session:
        await audit.record(
            session,
            actor=actor,
            role=role,
            action=f"{request.method} {request.url.path}",
            outcome="denied",
            detail={"status": status, "code": code, **({"reason": reason} if reason else {})},
        )
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer", **(headers or {})}
    return ApiError(status, code, message, headers=headers)


class RoleGuard:
    """A dependency that admits a valid API key whose role is in `roles` (admin always).

    The roles are an attribute so the route table itself says who may call each route; the
    role-matrix test reads them from there. `action` names the route in the audit log, and
    `rate_limited` spends a token of the caller's bucket after the role check.
    """

    def __init__(self, roles: frozenset[Role], *, action: str | None, rate_limited: bool) -> None:
        self.roles = roles | {Role.ADMIN}
        self.action = action
        self.rate_limited = rate_limited

    async def __call__(
        self,
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        if credentials is None:
            raise await _deny(
                request,
                status=401,
                code="unauthenticated",
                message="send an API key (or, with single sign-on, a token) as "
                "'Authorization: Bearer <key>'",
                actor="anonymous",
                role=None,
            )
        principal = await _authenticate(request, credentials.credentials)
        if principal.role not in self.roles:
            raise await _deny(
                request,
                status=403,
                code="forbidden",
                message=f"role {principal.role} may not do this; needs one of "
                f"{', '.join(sorted(self.roles))}",
                actor=principal.name,
                role=principal.role,
            )
        if self.rate_limited:
            wait_s = request.state.limiter.take(principal.rate_key)
            if wait_s is not None:
                raise await _deny(
                    request,
                    status=429,
                    code="rate_limited",
                    message="too many changes from this caller; retry after the given seconds",
                    actor=principal.name,
                    role=principal.role,
                    headers={"Retry-After": retry_after_header(wait_s)},
                )
        # Admitted: failures from here on are audited by the error handlers (api.audit_trail).
        request.state.principal = principal
        request.state.audit_action = self.action
        return principal


async def _authenticate(request: Request, token: str) -> Principal:
    """An API key from the database, else (with OIDC on) a verified JWT; denials are audited."""
    verifier: OidcVerifier | None = getattr(request.state, "oidc", None)
    if verifier is None or looks_like_api_key(token):
        # One indexed read, and now and then a last-used stamp, each its own statement: a
        # transaction around them cost two more round trips on every request.
        async with autocommit_sessionmaker(request)() as session:
            principal = await apikeys.authenticate(session, token)
        if principal is None:
            raise await _deny(
                request,
                status=401,
                code="invalid_api_key",
                message="the API key is unknown or revoked",
                actor="anonymous",
                role=None,
            )
        return principal
    try:
        return await verifier.principal(token)
    except TokenRejected as exc:
        raise await _deny(
            request,
            status=exc.status,
            code=exc.code,
            message=exc.message,
            actor=exc.actor,
            role=None,
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
            if exc.status == 401
            else None,
            reason=exc.message,
        ) from None


def require(*roles: Role, action: str | None = None, rate_limited: bool = False) -> RoleGuard:
    return RoleGuard(frozenset(roles), action=action, rate_limited=rate_limited)


def mutation(*roles: Role, action: str) -> RoleGuard:
    """The guard of a route that changes something: audited under `action`, rate limited."""
    return require(*roles, action=action, rate_limited=True)


ViewerDep = Annotated[Principal, Depends(require(*READERS))]
IngestDep = Annotated[Principal, Depends(require(Role.INGEST))]
AdminDep = Annotated[Principal, Depends(require(Role.ADMIN))]
