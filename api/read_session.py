"""The session of a route that only reads: no BEGIN and COMMIT round trips around its queries."""

import functools
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


def autocommit_sessionmaker(request: Request) -> Callable[[], AsyncSession]:
    """Sessions whose statements each commit on their own: no BEGIN and COMMIT round trips.

    An option view of the same engine and pool; a connection is only checked out by the first
    query, and its isolation level is put back when it returns to the pool.
    """
    sessionmaker: async_sessionmaker[AsyncSession] = request.state.sessionmaker
    autocommit = sessionmaker.kw["bind"].execution_options(isolation_level="AUTOCOMMIT")
    return functools.partial(sessionmaker, bind=autocommit)


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """Each statement runs on its own, in autocommit.

    At READ COMMITTED, PostgreSQL's default and Concord's, every statement inside a transaction
    takes its own snapshot anyway, so the reads see the same rows; what goes is two round trips
    per request (docs/performance.md, Lookup). A write through this session would commit at
    once, statement by statement: routes that change anything use `api.deps.SessionDep`.
    """
    async with autocommit_sessionmaker(request)() as session:
        yield session


ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]
