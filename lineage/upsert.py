"""INSERT … ON CONFLICT DO NOTHING on both backends: a row that may already exist costs one
statement, not a look-up first, and a taken key is not an error in the database's log."""

import functools

from sqlalchemy import Insert, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

_DIALECTS = {"postgresql": postgresql, "sqlite": sqlite}


def insert_if_absent(
    session: AsyncSession, table: Table, unique: tuple[str, ...], *, returning: str | None = None
) -> Insert:
    """An INSERT into `table` that does nothing when the unique key named by `unique` is taken;
    with `returning`, that column of the row inserted (none when the key was taken).

    Execute it with the row as parameters: the statement is built once per backend, so that
    each call skips building and hashing it (SQLAlchemy caches its compiled form by that key).
    """
    return _statement(session.get_bind().dialect.name, table, unique, returning)


@functools.cache
def _statement(
    dialect: str, table: Table, unique: tuple[str, ...], returning: str | None
) -> Insert:
    statement: Insert = (
        _DIALECTS[dialect].insert(table).on_conflict_do_nothing(index_elements=unique)
    )
    return statement if returning is None else statement.returning(table.c[returning])
