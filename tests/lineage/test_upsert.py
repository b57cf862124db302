"""A row that may already exist is one INSERT … ON CONFLICT DO NOTHING, on both backends."""

from sqlalchemy import event, func, select
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage import runs
from lineage.enums import System, TxState
from lineage.models import ExternalRef, table_of
from lineage.upsert import insert_if_absent
from tests.api.builders import add_transaction


async def test_a_reference_added_twice_is_stored_once_without_a_database_error(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker.begin() as session:
        correlation_id = (await add_transaction(session, state=TxState.RUNNING)).correlation_id
    raised: list[BaseException] = []

    def record(context: ExceptionContext) -> None:
        raised.append(context.original_exception)

    engine = sessionmaker.kw["bind"].sync_engine
    event.listen(engine, "handle_error", record)
    try:
        # A retried or replayed step adds the reference its earlier attempt already added.
        for _ in range(2):
            async with sessionmaker.begin() as session:
                await runs.add_external_ref(
                    session, correlation_id, system=System.ERP, object_type="invoice",
                    external_id="INV-1",
                )  # fmt: skip
    finally:
        event.remove(engine, "handle_error", record)

    assert raised == []
    async with sessionmaker() as session:
        stored = await session.scalar(
            select(func.count())
            .select_from(ExternalRef)
            .where(ExternalRef.correlation_id == correlation_id, ExternalRef.system == System.ERP)
        )
    assert stored == 1


async def test_returning_tells_an_insert_from_a_taken_key(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker.begin() as session:
        correlation_id = (await add_transaction(session, state=TxState.RUNNING)).correlation_id
    refs = table_of(ExternalRef)
    key = ("correlation_id", "system", "object_type", "external_id")
    row = {
        "correlation_id": correlation_id,
        "system": System.CRM,
        "object_type": "deal",
        "external_id": "D-1",
    }

    ids = []
    for _ in range(2):
        async with sessionmaker.begin() as session:
            ids.append(
                await session.scalar(insert_if_absent(session, refs, key, returning="id"), row)
            )

    assert isinstance(ids[0], int)
    assert ids[1] is None
