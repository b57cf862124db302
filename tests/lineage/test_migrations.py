"""`concord db upgrade` builds exactly the schema the ORM declares, on both backends."""

import os
import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from lineage.db import make_engine
from lineage.models import Base


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_upgrade_on_an_empty_database_matches_the_models(empty_database_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "concord", "db", "upgrade"],
        env={**os.environ, "CONCORD_DATABASE_URL": empty_database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr

    engine = make_engine(empty_database_url)
    try:
        async with engine.connect() as connection:
            tables = await connection.run_sync(_tables)
            diff = await connection.run_sync(_diff)
    finally:
        await engine.dispose()
    assert set(Base.metadata.tables) | {"alembic_version"} == tables
    assert diff == []


async def test_upgrade_twice_is_harmless(empty_database_url: str) -> None:
    env = {**os.environ, "CONCORD_DATABASE_URL": empty_database_url}
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-m", "concord", "db", "upgrade"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
