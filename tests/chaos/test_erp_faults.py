"""An ERP that rate-limits, fails, hangs and drops answers after committing still ends up
holding every invoice exactly once, and no retry goes out before the ERP's Retry-After."""

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.models import StepAttempt
from tests.chaos.harness import (
    EVENTS,
    assert_posted_exactly_once,
    running_system,
    send_invoices,
    wait_posted,
)
from tests.chaos.history import verdict_for_invoices

RETRY_AFTER_S = 1
FAULTS = (
    f"erp:429=0.12,erp:retry_after={RETRY_AFTER_S},erp:500=0.08,erp:hang=0.03,erp:hang_s=5,"
    "erp.invoice:drop_after_commit=0.06,seed=11"
)


async def test_seeded_erp_faults_post_every_invoice_exactly_once(
    database_url: str, redis_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    count = max(60, EVENTS // 3)
    with running_system(database_url, redis_url, faults=FAULTS) as system:
        invoice_ids = await send_invoices(system, count)
        # A one-second client timeout turns a hang into a retryable timeout quickly.
        system.start_worker(CONCORD_CONNECTOR_TIMEOUT_S="1", CONCORD_MAX_ATTEMPTS="12")
        system.start_worker(CONCORD_CONNECTOR_TIMEOUT_S="1", CONCORD_MAX_ATTEMPTS="12")

        posted = await wait_posted(sessionmaker, count, timeout_s=240)

        assert posted == count
        assert_posted_exactly_once(system, invoice_ids)
        (await verdict_for_invoices(system, sessionmaker, invoice_ids)).assert_ok()

    async with sessionmaker() as session:
        attempts = list(
            await session.scalars(
                select(StepAttempt).order_by(StepAttempt.step_id, StepAttempt.number)
            )
        )
    statuses = [a.http_status for a in attempts]
    # The faults really happened: rate limits, server errors and lost answers among them.
    assert statuses.count(429) > 0
    assert statuses.count(500) > 0
    assert any(a.error_message and "timed out" in a.error_message.lower() for a in attempts)
    early = [
        (before.correlation_id, before.number)
        for before, after in zip(attempts, attempts[1:], strict=False)
        if before.step_id == after.step_id
        and before.http_status == 429
        and before.ended_at is not None
        and after.started_at < before.ended_at + timedelta(seconds=RETRY_AFTER_S)
    ]
    assert early == []
