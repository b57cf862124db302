"""Request-scoped dependencies: the session that owns the commit, and the caller's role."""

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any, TypedDict

from arq.connections import ArqRedis
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.errors import ApiError
from api.settings import ApiSettings
from lineage import apikeys, audit
from lineage.apikeys import Principal
from lineage.enums import Role


class State(TypedDict):
    settings: ApiSettings
    sessionmaker: async_sessionmaker[AsyncSession]
    arq: ArqRedis


def get_state(request: Request) -> State:
    return State(
        settings=request.state.settings,
        sessionmaker=request.state.sessionmaker,
        arq=request.state.arq,
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

_bearer = HTTPBearer(auto_error=False, description="A Concord API key: `Bearer ck_...`")

READERS = frozenset({Role.VIEWER, Role.EXECUTIVE, Role.FINANCE, Role.OPS, Role.ADMIN})


async def _deny(
    request: Request, *, status: int, code: str, message: str, actor: str, role: str | None
) -> ApiError:
    # Denials are audited in their own transaction: the request's own work is rolled back.
    async with request.state.sessionmaker.begin() as session:
        await audit.record(
            session,
            actor=actor,
            role=role,
            action=f"{request.method} {request.url.path}",
            outcome="denied",
            detail={"status": status, "code": code},
        )
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return ApiError(status, code, message, headers=headers)


def require(*roles: Role) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency that admits a valid API key whose role is one of `roles` (admin always)."""
    allowed = frozenset(roles) | {Role.ADMIN}

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        if credentials is None:
            raise await _deny(
                request,
                status=401,
                code="unauthenticated",
                message="send an API key as 'Authorization: Bearer <key>'",
                actor="anonymous",
                role=None,
            )
        async with request.state.sessionmaker.begin() as session:
            principal = await apikeys.authenticate(session, credentials.credentials)
        if principal is None:
            raise await _deny(
                request,
                status=401,
                code="invalid_api_key",
                message="the API key is unknown or revoked",
                actor="anonymous",
                role=None,
            )
        if principal.role not in allowed:
            raise await _deny(
                request,
                status=403,
                code="forbidden",
                message=f"role {principal.role} may not do this; needs one of "
                f"{', '.join(sorted(allowed))}",
                actor=principal.name,
                role=principal.role,
            )
        return principal

    return dependency


ViewerDep = Annotated[Principal, Depends(require(*READERS))]
IngestDep = Annotated[Principal, Depends(require(Role.INGEST))]
