"""A second migrated database for a test that compares two independent systems."""

import os
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from lineage import apikeys
from lineage.db import make_engine, make_sessionmaker
from lineage.enums import Role


@asynccontextmanager
async def second_database(
    like_url: str, *, sqlite_template: Path, pg_template: str, directory: Path
) -> AsyncIterator[str]:
    """An empty migrated database on the same backend as `like_url`, dropped afterwards."""
    if like_url.startswith("sqlite"):
        path = directory / f"second-{uuid.uuid4().hex[:8]}.db"
        shutil.copyfile(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    admin_url = os.environ["CONCORD_TEST_DATABASE_URL"]
    name = f"concord_second_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    await _admin(admin_url, f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    parts = urlsplit(admin_url)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    finally:
        await _admin(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def viewer_key(database_url: str) -> str:
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine).begin() as session:
            _row, key = await apikeys.create_key(session, name="test-viewer", role=Role.VIEWER)
    finally:
        await engine.dispose()
    return key
