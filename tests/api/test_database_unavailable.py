"""A database that cannot take the work: 503 with Retry-After, never a 500 after 30 s.

A webhook sender retries a 503 later; its retry is then stored once. The pool here holds one
connection, and the test takes it away by making a first request wait on a table lock.
"""

import asyncio
import json
import socket
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import func, make_url, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.errors import database_unavailable
from api.main import create_app
from api.settings import ApiSettings
from lineage.db import make_engine
from lineage.enums import Role
from lineage.models import InboxEvent
from tests.api.helpers import auth
from tests.factories import WEBHOOK_SECRET, new_invoice, signed_headers, stripe_event
from tests.support.servers import serve_in_thread

URL = "/v1/webhooks/stripe"
ONLY_POSTGRESQL = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
ONLY_SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _event() -> tuple[str, bytes]:
    event = stripe_event(invoice=new_invoice())
    return str(event["id"]), json.dumps(event).encode()


def _assert_retry_later(response: httpx.Response, code: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"].isdigit()
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()["error"]["code"] == code


async def _stored(sessionmaker: async_sessionmaker[AsyncSession], event_id: str) -> int:
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(InboxEvent)
            .where(InboxEvent.source_event_id == event_id)
        )
    return int(count or 0)


@pytest.fixture
def one_connection_api(database_url: str, redis_url: str) -> Iterator[str]:
    settings = ApiSettings(
        database_url=database_url,
        redis_url=redis_url,
        stripe_webhook_secret=WEBHOOK_SECRET,
        database_pool_size=1,
        database_max_overflow=0,
        database_pool_timeout_s=0.5,
    )
    with serve_in_thread(create_app(settings)) as url:
        yield url


@pytest.fixture
async def one_connection_client(one_connection_api: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=one_connection_api, timeout=60) as http:
        yield http


async def _wait_for_lock_waiter(lock_holder: asyncpg.Connection, table: str) -> None:
    """Until another session waits on `table`: the API's only connection is then taken."""
    query = "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = $1::regclass"
    for _ in range(1000):
        if await lock_holder.fetchval(query, table):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no request came to wait on {table}")


@ONLY_POSTGRESQL
async def test_exhausted_pool_answers_503_and_the_retry_is_stored_once(
    one_connection_client: httpx.AsyncClient,
    database_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    api_keys: dict[Role, str],
) -> None:
    first_id, first = _event()
    second_id, second = _event()
    lock_holder = await asyncpg.connect(database_url)
    try:
        lock = lock_holder.transaction()
        await lock.start()
        await lock_holder.execute("LOCK TABLE inbox_event IN ACCESS EXCLUSIVE MODE")
        holding = asyncio.create_task(
            one_connection_client.post(URL, content=first, headers=signed_headers(first))
        )
        await _wait_for_lock_waiter(lock_holder, "inbox_event")

        refused = await one_connection_client.post(
            URL, content=second, headers=signed_headers(second)
        )
        control_plane = await one_connection_client.get(
            "/v1/me", headers=auth(api_keys[Role.VIEWER])
        )

        await lock.rollback()
        held = await holding
    finally:
        await lock_holder.close()

    _assert_retry_later(refused, "database_busy")
    _assert_retry_later(control_plane, "database_busy")
    assert held.status_code == 202, held.text
    assert await _stored(sessionmaker, second_id) == 0

    retried = await one_connection_client.post(URL, content=second, headers=signed_headers(second))

    assert retried.status_code == 202, retried.text
    assert retried.json()["duplicate"] is False
    assert (await _stored(sessionmaker, first_id), await _stored(sessionmaker, second_id)) == (1, 1)


@ONLY_SQLITE
async def test_a_sqlite_api_whose_connection_waits_on_the_lock_answers_503_at_once(
    one_connection_client: httpx.AsyncClient,
    database_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    api_keys: dict[Role, str],
) -> None:
    """The embedded default as well: a request waiting for SQLite's write lock holds the API's
    only connection, and the next one gets 503 when its pool wait ends, not 30 s later."""
    events = dict([_event(), _event()])
    holder = sqlite3.connect(str(make_url(database_url).database))
    holder.execute("BEGIN IMMEDIATE")
    try:
        sends = {
            asyncio.create_task(
                one_connection_client.post(URL, content=body, headers=signed_headers(body))
            ): event_id
            for event_id, body in events.items()
        }
        # Whichever got the connection waits on the lock; the other is refused meanwhile.
        done, waiting = await asyncio.wait(sends, return_when=asyncio.FIRST_COMPLETED)
        control_plane = await one_connection_client.get(
            "/v1/me", headers=auth(api_keys[Role.VIEWER])
        )
    finally:
        holder.rollback()
        holder.close()
    [refused_task] = done
    [held_task] = waiting
    refused, refused_id = refused_task.result(), sends[refused_task]

    _assert_retry_later(refused, "database_busy")
    _assert_retry_later(control_plane, "database_busy")
    assert (await held_task).status_code == 202
    assert await _stored(sessionmaker, refused_id) == 0
    body = events[refused_id]
    retried = await one_connection_client.post(URL, content=body, headers=signed_headers(body))
    assert retried.status_code == 202, retried.text
    assert {await _stored(sessionmaker, event_id) for event_id in events} == {1}


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port that refuses connections: bound, so nothing else takes it, but not listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
async def test_unreachable_database_answers_503_on_every_route(
    backend: str, refused_port: int, redis_url: str, tmp_path: Path
) -> None:
    unreachable = {
        "postgresql": f"postgresql://postgres@127.0.0.1:{refused_port}/concord",
        # SQLite cannot open a file in a directory that does not exist.
        "sqlite": f"sqlite:///{tmp_path / 'missing' / 'concord.db'}",
    }[backend]
    settings = ApiSettings(
        database_url=unreachable, redis_url=redis_url, stripe_webhook_secret=WEBHOOK_SECRET
    )
    _event_id, body = _event()

    with serve_in_thread(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            intake = await http.post(URL, content=body, headers=signed_headers(body))
            control_plane = await http.get("/v1/me", headers=auth("ck_not_checked_yet"))

    _assert_retry_later(intake, "database_unavailable")
    _assert_retry_later(control_plane, "database_unavailable")


@ONLY_POSTGRESQL
async def test_errors_a_retry_would_repeat_are_not_outages(
    database_url: str, tmp_path: Path
) -> None:
    postgresql = make_engine(database_url)
    sqlite = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        async with postgresql.connect() as conn:
            await conn.execute(text("CREATE TEMPORARY TABLE once (id int PRIMARY KEY)"))
            await conn.execute(text("INSERT INTO once VALUES (1)"))
            with pytest.raises(IntegrityError) as duplicate:
                await conn.execute(text("INSERT INTO once VALUES (1)"))
            await conn.rollback()
        async with sqlite.connect() as conn:
            with pytest.raises(OperationalError) as no_table:
                await conn.execute(text("SELECT * FROM no_such_table"))
    finally:
        await postgresql.dispose()
        await sqlite.dispose()
    with pytest.raises(FileNotFoundError) as missing_file:
        Path("/nonexistent/concord").read_text()

    assert database_unavailable(duplicate.value) is None
    assert database_unavailable(no_table.value) is None
    assert database_unavailable(missing_file.value) is None
