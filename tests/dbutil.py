import re

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.models import BusinessTransaction, InboxEvent


async def inbox_counts(sessionmaker: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    """(events, transactions) stored."""
    async with sessionmaker() as session:
        events = await session.scalar(select(func.count()).select_from(InboxEvent))
        txs = await session.scalar(select(func.count()).select_from(BusinessTransaction))
    return int(events or 0), int(txs or 0)


def statement_shape(statement: str) -> str:
    """A SQL statement as its verb and the table it writes or first reads: "INSERT inbox_event"."""
    table = re.search(r"\b(?:INTO|FROM|UPDATE)\s+(\w+)", statement, re.IGNORECASE)
    assert table is not None, statement
    return f"{statement.split()[0].upper()} {table.group(1)}"
