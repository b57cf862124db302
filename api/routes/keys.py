from typing import Annotated

from fastapi import APIRouter, Depends, Path

from api import audit_trail
from api.deps import AdminDep, SessionDep, mutation
from api.errors import GUARDED, error_responses
from api.schemas import INT64_MAX
from api.schemas_actions import ApiKeyCreate, ApiKeyCreated, ApiKeyRead
from lineage import apikeys
from lineage.apikeys import Principal
from lineage.clock import utc_now
from lineage.enums import Role
from lineage.errors import ApiKeyNotFound

# Rotation: create a new key, move the client over, revoke the old one.
router = APIRouter(prefix="/v1/keys", tags=["keys"], responses=GUARDED)


@router.post("", status_code=201, responses=error_responses(429))
async def create_key(
    key_in: ApiKeyCreate,
    session: SessionDep,
    principal: Annotated[Principal, Depends(mutation(Role.ADMIN, action="key.create"))],
) -> ApiKeyCreated:
    """Create an API key; the key itself is in this answer only (its hash is stored)."""
    row, key = await apikeys.create_key(session, name=key_in.name, role=key_in.role)
    await audit_trail.record_success(
        session,
        principal,
        action="key.create",
        target=f"key:{row.id}",
        after={"name": row.name, "role": row.role.value, "prefix": row.prefix},
    )
    return ApiKeyCreated(**ApiKeyRead.model_validate(row).model_dump(), key=key)


@router.get("")
async def list_keys(session: SessionDep, _principal: AdminDep) -> list[ApiKeyRead]:
    """Every key, revoked ones included, without the keys themselves."""
    return [ApiKeyRead.model_validate(row) for row in await apikeys.list_keys(session)]


@router.post(
    "/{key_id}/revoke",
    responses=error_responses(404, 429),
)
async def revoke_key(
    key_id: Annotated[int, Path(ge=1, le=INT64_MAX)],
    session: SessionDep,
    principal: Annotated[Principal, Depends(mutation(Role.ADMIN, action="key.revoke"))],
) -> ApiKeyRead:
    """Revoke a key at once; requests with it are refused from now on."""
    if not await apikeys.revoke_key(session, key_id):
        raise ApiKeyNotFound(key_id)
    row = await apikeys.get_key(session, key_id)
    assert row is not None
    await session.refresh(row)
    await audit_trail.record_success(
        session,
        principal,
        action="key.revoke",
        target=f"key:{row.id}",
        before={"revoked_at": None},
        after={"revoked_at": (row.revoked_at or utc_now()).isoformat()},
    )
    return ApiKeyRead.model_validate(row)
