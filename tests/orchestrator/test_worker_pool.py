"""A worker's database pool holds a connection for each job it runs at once.

With fewer (it was 10 for 20 jobs), every burst of more concurrent writers than that opened and
closed overflow connections, each a handshake and every statement prepared anew.
"""

import asyncio

from sqlalchemy import event, text
from sqlalchemy.pool import QueuePool

from lineage.db import SQLITE_POOL_SIZE, is_sqlite
from orchestrator.settings import OrchestratorSettings
from orchestrator.worker import worker_engine

JOBS = 12


async def test_jobs_writing_at_once_reuse_the_pools_connections(
    database_url: str, redis_url: str
) -> None:
    settings = OrchestratorSettings.model_validate(
        {"database_url": database_url, "redis_url": redis_url, "max_jobs": JOBS}
    )
    engine = worker_engine(settings)
    if is_sqlite(database_url):
        # SQLite serialises writers in the pool instead (lineage/db.py).
        assert isinstance(engine.pool, QueuePool)
        assert engine.pool.size() == SQLITE_POOL_SIZE
        await engine.dispose()
        return
    opened: list[object] = []
    event.listen(engine.sync_engine, "connect", lambda *_: opened.append(1))
    held = asyncio.Barrier(JOBS)

    async def job() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            await held.wait()  # every job holds its connection at the same moment

    try:
        await asyncio.gather(*(job() for _ in range(JOBS)))
        assert len(opened) == JOBS
        await asyncio.gather(*(job() for _ in range(JOBS)))
        assert len(opened) == JOBS, "the second burst opened connections of its own"
    finally:
        await engine.dispose()
