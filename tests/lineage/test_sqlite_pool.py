"""A SQLite file's writers wait in the pool, first come first served, not in SQLite's busy
handler, where a writer that arrived later often wins (lineage/db.py, SQLITE_POOL_SIZE)."""

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import TimeoutError as PoolTimeout

from lineage.db import SQLITE_POOL_SIZE, make_engine

WRITERS = 12


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "pool.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE row (n INTEGER PRIMARY KEY)")
    return path


async def test_concurrent_writers_hold_at_most_the_pool_size_of_connections(
    database: Path,
) -> None:
    engine = make_engine(f"sqlite:///{database}", pool_size=20)
    open_now, most = 0, 0

    def checked_out(*_args: Any) -> None:
        nonlocal open_now, most
        open_now += 1
        most = max(most, open_now)

    def checked_in(*_args: Any) -> None:
        nonlocal open_now
        open_now -= 1

    event.listen(engine.sync_engine, "checkout", checked_out)
    event.listen(engine.sync_engine, "checkin", checked_in)
    # Another process's writer holds the lock for a while, so the writers pile up behind it.
    holder = sqlite3.connect(database, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    released = threading.Timer(0.5, holder.rollback)
    released.start()

    async def write(n: int) -> None:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO row (n) VALUES (:n)"), {"n": n})

    try:
        await asyncio.gather(*(write(n) for n in range(WRITERS)))
        async with engine.connect() as conn:
            written = (await conn.execute(text("SELECT count(*) FROM row"))).scalar_one()
    finally:
        released.join()
        holder.close()
        await engine.dispose()

    assert written == WRITERS
    assert most == SQLITE_POOL_SIZE


async def test_a_sqlite_pool_wait_ends_at_the_pool_timeout(database: Path) -> None:
    engine = make_engine(f"sqlite:///{database}", pool_size=1, pool_timeout_s=0.2)
    try:
        async with engine.connect():
            with pytest.raises(PoolTimeout):
                async with engine.connect():
                    pass
    finally:
        await engine.dispose()


def test_an_in_memory_database_keeps_its_single_connection() -> None:
    assert type(make_engine("sqlite://").pool).__name__ == "StaticPool"
