"""The engine's one-statement writes sent by asyncpg itself (lineage/driver.py): what SQLAlchemy
did around a statement still happens. PostgreSQL only: SQLite's writes never take this path."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from lineage import runs
from lineage.clock import utc_now
from lineage.db import make_engine, make_sessionmaker
from lineage.enums import System, TxState
from lineage.models import StepAttempt, WorkflowStep
from tests.api.builders import add_running_run, add_transaction

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

SM = async_sessionmaker[AsyncSession]


async def _run_id(sessionmaker: SM) -> tuple[int, str]:
    async with sessionmaker.begin() as session:
        tx = await add_transaction(session, state=TxState.RUNNING)
        run = await add_running_run(session, tx, started_at=utc_now())
        return run.id, tx.correlation_id


async def _first_attempt(
    sessionmaker: SM, run_id: int, cid: str, name: str, now: datetime | None = None
) -> tuple[WorkflowStep, StepAttempt]:
    return await runs.record_first_attempt(
        sessionmaker, run_id=run_id, correlation_id=cid, name=name, target=System.ERP,
        idempotency_key=f"{cid}:{name}", external_id="in_1", now=now or utc_now(),
    )  # fmt: skip


async def _steps(sessionmaker: SM) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(WorkflowStep)) or 0)


async def test_listeners_see_each_statement_it_sends(sessionmaker: SM) -> None:
    run_id, cid = await _run_id(sessionmaker)
    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    engine: AsyncEngine = sessionmaker.kw["bind"]
    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        await _first_attempt(sessionmaker, run_id, cid, "erp.post_invoice")
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)

    assert len(sent) == 1
    statement, parameters = sent[0]
    assert statement.startswith("WITH new_step AS")
    assert cid in parameters
    assert f"{cid}:erp.post_invoice" in parameters


async def test_its_parameters_are_checked_as_sqlalchemy_checks_them(sessionmaker: SM) -> None:
    """The bind processors run: a naive datetime is refused before anything is sent."""
    run_id, cid = await _run_id(sessionmaker)

    with pytest.raises(ValueError, match="naive datetimes"):
        await _first_attempt(sessionmaker, run_id, cid, "erp.post_invoice", datetime(2026, 1, 1))

    assert await _steps(sessionmaker) == 0


@asynccontextmanager
async def _pool_of_one(database_url: str) -> AsyncIterator[tuple[SM, int]]:
    """A sessionmaker whose pool holds one connection, and that connection's backend PID."""
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        yield make_sessionmaker(engine), await _backend(engine)
    finally:
        await engine.dispose()


async def _backend(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one())


async def test_a_server_error_keeps_the_connection(database_url: str) -> None:
    """A refused row (no such run) is the server's answer on a healthy connection: raised as
    asyncpg's error, nothing written, and the one pooled connection serves the next write."""
    async with _pool_of_one(database_url) as (sessionmaker, backend):
        run_id, cid = await _run_id(sessionmaker)

        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await _first_attempt(sessionmaker, run_id + 1000, cid, "erp.post_invoice")
        step, _ = await _first_attempt(sessionmaker, run_id, cid, "erp.post_invoice")

        assert await _backend(sessionmaker.kw["bind"]) == backend
        assert await _steps(sessionmaker) == 1
        assert step.run_id == run_id


async def test_a_broken_connection_is_not_handed_out_again(database_url: str) -> None:
    """A connection whose backend went away fails the write that meets it; the pool (of one)
    must not hand it out again, or every later write would fail the same way."""
    async with _pool_of_one(database_url) as (sessionmaker, backend):
        run_id, cid = await _run_id(sessionmaker)
        admin = await asyncpg.connect(database_url)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", backend)
        finally:
            await admin.close()

        # Which error depends on when asyncpg reads the server's goodbye: its FATAL message
        # (a PostgresError), the closed socket, or a protocol still consuming the message.
        broken = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)
        with pytest.raises((*broken, OSError)):
            await _first_attempt(sessionmaker, run_id, cid, "erp.post_invoice")
        await _first_attempt(sessionmaker, run_id, cid, "erp.post_credit")

        assert await _steps(sessionmaker) == 1
