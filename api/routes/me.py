from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from api.deps import require
from api.errors import GUARDED
from lineage.apikeys import Principal
from lineage.enums import Role

router = APIRouter(prefix="/v1/me", tags=["access"], responses=GUARDED)

# Every role may ask who it is: the dashboard shows the pages a role has from this answer.
_ANY_KEY = require(*Role)


class MeRead(BaseModel):
    # The audit actor: the key's name, or `oidc:<email or subject>` for a single sign-on user.
    name: str
    role: Role


@router.get("")
async def whoami(principal: Annotated[Principal, Depends(_ANY_KEY)]) -> MeRead:
    """The name and role of the API key, or the single sign-on user, that signs this request."""
    return MeRead(name=principal.name, role=principal.role)
