"""API keys: only a SHA-256 of the key is stored; the key itself is shown once."""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lineage.clock import utc_now
from lineage.enums import Role
from lineage.models import ApiKey

# Writing last_used_at on every request would turn each read into a write.
_LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who signs a request: an API key (key_id set) or an OpenID Connect user (key_id None).

    `name` is the audit actor: the key's name, or `oidc:<email or subject>`. `rate_key` names
    the caller's rate-limit bucket, stable across a user's tokens.
    """

    key_id: int | None
    name: str
    role: Role
    subject: str | None = None

    @property
    def rate_key(self) -> str:
        return f"key:{self.key_id}" if self.key_id is not None else f"oidc:{self.subject}"


async def create_key(session: AsyncSession, *, name: str, role: Role) -> tuple[ApiKey, str]:
    """Create a key; return the row and the plaintext key, which is never stored."""
    prefix = secrets.token_hex(4)
    key = f"ck_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(name=name, role=role, key_hash=hash_key(key), prefix=prefix)
    session.add(row)
    await session.flush()
    return row, key


async def authenticate(session: AsyncSession, key: str) -> Principal | None:
    row = await session.scalar(
        select(ApiKey).where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
    )
    if row is None:
        return None
    now = utc_now()
    if row.last_used_at is None or now - row.last_used_at > _LAST_USED_RESOLUTION:
        await session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
    return Principal(key_id=row.id, name=row.name, role=row.role)


async def list_keys(session: AsyncSession) -> list[ApiKey]:
    return list(await session.scalars(select(ApiKey).order_by(ApiKey.id)))


async def revoke_key(session: AsyncSession, key_id: int) -> bool:
    result = await session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utc_now())
    )
    return bool(getattr(result, "rowcount", 0))


async def get_key(session: AsyncSession, key_id: int) -> ApiKey | None:
    return await session.get(ApiKey, key_id)
