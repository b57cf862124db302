"""Transactions as CSV, streamed page by page so a large export never sits in memory."""

import csv
import io
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.schemas import TransactionRead
from lineage import queries

COLUMNS = list(TransactionRead.model_fields)
_PAGE = 500


def _line(values: list[object]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(["" if v is None else v for v in values])
    return out.getvalue()


async def transaction_rows(
    sessionmaker: async_sessionmaker[AsyncSession], flt: queries.TransactionFilter
) -> AsyncIterator[str]:
    """The header, then every matching transaction, newest first (the order of the JSON list)."""
    yield _line(list(COLUMNS))
    cursor: str | None = None
    # Its own session: the request's session is closed before a streamed body is sent.
    async with sessionmaker() as session:
        while True:
            rows, cursor = await queries.list_transactions(session, flt, limit=_PAGE, cursor=cursor)
            for row in rows:
                data = TransactionRead.model_validate(row).model_dump(mode="json")
                yield _line([data[c] for c in COLUMNS])
            if cursor is None:
                return
