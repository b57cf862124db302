"""The engine's one-statement writes on PostgreSQL, sent straight to asyncpg.

SQLAlchemy's execution of a statement that is already compiled and cached (a session or a
connection, the execution context, parameter and result handling) cost 0.3 ms of CPU per
statement on a slow machine, several times what asyncpg needs to send it as a prepared
statement (docs/performance.md, "Session 19"). The worker's statements of lineage/hot_path.py
are compiled here once, by SQLAlchemy and with its bind processors (and, for what a SELECT
answers, its result processors), and sent by the pooled connection's asyncpg driver, which
prepares each once per connection.

What SQLAlchemy would have done around the call is kept: `before_cursor_execute` fires for
every statement sent (round-trip counts, tests and tracing listen to it), and a connection that
fails other than with the server's own error on an open connection is invalidated, as SQLAlchemy
invalidates one after a disconnect or a cancellation, so that the pool does not hand it out
again. Server errors reach the caller as asyncpg's exceptions, not SQLAlchemy's.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from asyncpg import PostgresError
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Executable


@dataclass(frozen=True, slots=True)
class _Bind:
    name: str
    process: Callable[[Any], Any] | None
    # A parameter the statement carries itself (a literal, None included), with its value.
    fixed: bool
    value: Any


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    binds: tuple[_Bind, ...]
    # Each answered column's name and the processor SQLAlchemy would run on its value.
    columns: tuple[tuple[str, Callable[[Any], Any] | None], ...]

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        """The positional arguments asyncpg takes, as SQLAlchemy would have processed them."""
        values = []
        for bind in self.binds:
            value = bind.value if bind.fixed else params[bind.name]
            values.append(bind.process(value) if bind.process is not None else value)
        return values


# Keyed by the statement itself (hashed by identity), which the key keeps alive: an id alone could
# be taken by another statement once the first was freed.
_compiled: dict[tuple[Executable, str], _Compiled] = {}


def _compile(statement: Executable, dialect: Dialect) -> _Compiled:
    key = (statement, dialect.name)
    found = _compiled.get(key)
    if found is not None:
        return found
    compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
    processors = compiled._bind_processors
    fixed = {name: bind.value for bind, name in compiled.bind_names.items()}
    binds = tuple(
        _Bind(name, processors.get(name), not name.startswith("p_"), fixed[name])
        for name in compiled.positiontup
    )
    selected = getattr(statement, "selected_columns", None) or ()
    columns = tuple((c.key, c.type.result_processor(dialect, None)) for c in selected)
    _compiled[key] = made = _Compiled(compiled.string, binds, columns)
    return made


def is_postgres(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


async def fetch(
    engine: AsyncEngine, statement: Executable, params: Mapping[str, Any]
) -> Sequence[Sequence[Any]]:
    """Run one of hot_path's statements whose parameters are all named p_<name>, in
    autocommit (atomic as one statement) on a pooled connection; its rows as tuples of what
    asyncpg returns, with no result processing: for statements that answer ids."""
    return await _fetch(engine, _compile(statement, engine.dialect), params)


async def fetch_mappings(
    engine: AsyncEngine, statement: Executable, params: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """fetch, for a SELECT: each row by column name, its values processed as SQLAlchemy
    processes them (UTC datetimes, enums, JSON)."""
    compiled = _compile(statement, engine.dialect)
    return [
        {
            name: process(value) if process else value
            for (name, process), value in zip(compiled.columns, row, strict=True)
        }
        for row in await _fetch(engine, compiled, params)
    ]


async def _fetch(
    engine: AsyncEngine, compiled: _Compiled, params: Mapping[str, Any]
) -> Sequence[Sequence[Any]]:
    arguments = compiled.arguments(params)
    async with engine.connect() as conn:
        sync = conn.sync_connection
        assert sync is not None
        sync.dispatch.before_cursor_execute(sync, None, compiled.sql, arguments, None, False)
        driver_connection: Any = (await conn.get_raw_connection()).driver_connection
        try:
            rows: Sequence[Sequence[Any]] = await driver_connection.fetch(compiled.sql, *arguments)
            return rows
        except BaseException as exc:
            # The server's refusal leaves a usable connection, unless the server closed it
            # (a terminated backend answers with an error too).
            if not isinstance(exc, PostgresError) or driver_connection.is_closed():
                await conn.invalidate()
            raise
