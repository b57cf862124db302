"""Small helpers shared by the API tests."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine, ExceptionContext
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.models import AuditLog


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def audit_rows(sessionmaker: async_sessionmaker[AsyncSession]) -> list[AuditLog]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(AuditLog).order_by(AuditLog.id)))


async def audit_count(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(AuditLog)) or 0)


def ok(response: httpx.Response, status: int = 200) -> object:
    assert response.status_code == status, response.text
    return response.json()


@contextmanager
def statements_of_the_api(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> Iterator[list[str]]:
    """The SQL sent by every engine except the test's own, i.e. by the API's."""
    ours = sessionmaker.kw["bind"].sync_engine
    sent: list[str] = []

    def record(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if conn.engine is not ours:
            sent.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(Engine, "before_cursor_execute", record)


@contextmanager
def database_errors_of_the_api(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> Iterator[list[BaseException]]:
    """Every error a database raised to the API's engine (a unique violation, say)."""
    ours = sessionmaker.kw["bind"].sync_engine
    raised: list[BaseException] = []

    def record(context: ExceptionContext) -> None:
        if context.engine is not ours:
            raised.append(context.original_exception)

    event.listen(Engine, "handle_error", record)
    try:
        yield raised
    finally:
        event.remove(Engine, "handle_error", record)
