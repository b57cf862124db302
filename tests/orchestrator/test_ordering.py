"""Business order: a later event on the same key waits, visibly, until its predecessor settles."""

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage import inbox
from lineage.enums import System, TxState
from lineage.inbox import IncomingEvent
from lineage.models import BusinessTransaction
from orchestrator import engine
from orchestrator.client.canonical import Invoice
from orchestrator.client.queue import queue_pool
from orchestrator.engine import Outcome
from orchestrator.ratelimit import TokenBucket
from orchestrator.settings import OrchestratorSettings
from tests.fakes import Fakes, ScriptedErp, fake_deps

T0 = datetime(2026, 11, 1, tzinfo=UTC)


async def _transaction(
    sessionmaker: async_sessionmaker[AsyncSession], event_id: str, occurred_at: datetime
) -> str:
    invoice = Invoice(
        invoice_id="in_ordered", customer_id="cus_1", amount_minor=100, currency="USD"
    )
    async with sessionmaker.begin() as session:
        result = await inbox.record_event(
            session,
            IncomingEvent(
                source="test",
                source_event_id=event_id,
                event_type="invoice.finalized",
                source_system=System.BILLING,
                payload={"id": event_id},
                workflow="invoice_generated",
                canonical=invoice.model_dump(mode="json"),
                invoice_id="in_ordered",
                ordering_key="invoice:in_ordered",
                occurred_at=occurred_at,
            ),
        )
    return result.correlation_id


async def _state(
    sessionmaker: async_sessionmaker[AsyncSession], correlation_id: str
) -> BusinessTransaction:
    async with sessionmaker() as session:
        tx = await session.get(BusinessTransaction, correlation_id)
    assert tx is not None
    return tx


async def test_later_event_waits_for_its_predecessor_then_runs(
    database_url: str, redis_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    pool = queue_pool(redis_url)
    erp = ScriptedErp()
    deps = fake_deps(
        OrchestratorSettings(database_url=database_url, redis_url=redis_url),
        sessionmaker,
        pool,
        Fakes(erp=erp),
    )
    # Delivered out of order: the later event arrives (and is woken) first.
    later = await _transaction(sessionmaker, "evt_2", T0 + timedelta(seconds=5))
    earlier = await _transaction(sessionmaker, "evt_1", T0)
    try:
        first = await engine.run_transaction(deps, later)
        waiting = await _state(sessionmaker, later)
        assert first is Outcome.WAITING
        assert waiting.state is TxState.PENDING
        assert earlier in (waiting.state_reason or "")
        assert erp.posts == []

        assert await engine.run_transaction(deps, earlier) is Outcome.POSTED
        # Posting the predecessor queued a wake-up for the waiting one.
        assert await pool.zcard("concord:queue") == 1
        assert await engine.run_transaction(deps, later) is Outcome.POSTED
    finally:
        await pool.aclose()

    assert [ctx.correlation_id for ctx in erp.posts] == [earlier, later]


async def test_token_bucket_is_shared_and_refills(redis_url: str) -> None:
    pool = queue_pool(redis_url)
    try:
        one = TokenBucket(pool, limits={"erp": 5.0})
        other = TokenBucket(pool, limits={"erp": 5.0})
        waits = [await (one if n % 2 else other).take("erp") for n in range(6)]
        unlimited = await one.take("crm")
    finally:
        await pool.aclose()

    assert waits[:5] == [0.0] * 5
    # The sixth call in the same instant waits for about one token: 1/5 s.
    assert 0.1 < waits[5] <= 0.2
    assert unlimited == 0.0
