"""Engines and sessions: plain database URLs in, async SQLAlchemy engines out."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer, event
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.types import TypeDecorator

from lineage.errors import InvalidDatabaseUrl

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}

# SQLite only autoincrements a column declared exactly INTEGER PRIMARY KEY.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on both backends; SQLite would otherwise hand back naive values."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use lineage.clock.utc_now()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def async_url(url: str) -> URL:
    """Map a plain sqlite:// or postgresql:// URL onto the async driver Concord uses."""
    try:
        parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    except ArgumentError as exc:
        raise InvalidDatabaseUrl(url) from exc
    backend = parsed.get_backend_name()
    if backend not in _ASYNC_DRIVERS:
        raise InvalidDatabaseUrl(url)
    return parsed.set(drivername=_ASYNC_DRIVERS[backend])


def is_sqlite(url: str) -> bool:
    return async_url(url).get_backend_name() == "sqlite"


# SQLite lets one connection write at a time, and a writer that finds the lock taken sleeps and
# polls (the busy handler) rather than queueing: writers that arrive later often win. With
# SQLAlchemy's default pool (up to 15 connections per process) the API and two workers made
# dozens of writers, and under load some starved for the whole 30 s busy timeout (the SQLite
# chaos scenarios, docs/reliability.md). Two connections per process move that wait into the
# pool, whose queue is first come, first served.
SQLITE_POOL_SIZE = 2


def _in_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"


def make_engine(
    url: str,
    *,
    echo: bool = False,
    pool_size: int = 10,
    max_overflow: int = 10,
    pool_timeout_s: float = 30.0,
) -> AsyncEngine:
    """`pool_timeout_s` bounds the wait for a free connection, after which SQLAlchemy raises
    sqlalchemy.exc.TimeoutError. A SQLite file keeps at most SQLITE_POOL_SIZE connections per
    process, whatever `pool_size` asks; an in-memory one keeps SQLAlchemy's single connection."""
    target = async_url(url)
    kwargs: dict[str, Any] = {"echo": echo}
    if target.get_backend_name() == "sqlite":
        # The API and workers write from separate processes: wait for the lock, don't fail.
        kwargs["connect_args"] = {"timeout": 30}
        if not _in_memory(target):
            kwargs.update(
                pool_size=min(pool_size, SQLITE_POOL_SIZE),
                max_overflow=0,
                pool_timeout=pool_timeout_s,
            )
    else:
        # No pre-ping: with asyncpg it costs three round trips per checkout, a third of a
        # transaction's (docs/performance.md). After a database restart the first statement on
        # a stale connection fails, SQLAlchemy discards the whole pool, and that one job is
        # re-run by the sweeper (or that one webhook is redelivered by its sender).
        kwargs.update(
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout_s,
            pool_recycle=1800,
        )
    engine = create_async_engine(target, **kwargs)
    if target.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
