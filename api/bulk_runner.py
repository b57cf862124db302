"""Runs bulk replay jobs inside the API process, one transaction per item.

The job's state lives in bulk_replay / bulk_replay_item, not here: this only drives it. A job
whose process died keeps its lease until it expires, then the next API start resumes it.
"""

import asyncio
import contextlib
import logging
from datetime import timedelta

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage import audit, bulk
from lineage.bulk_states import BulkItemOutcome
from lineage.clock import utc_now
from lineage.enums import TxState
from orchestrator.client.queue import try_enqueue_wakeup

log = logging.getLogger(__name__)


class BulkRunner:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        arq: ArqRedis,
        *,
        batch_size: int,
        lease_s: int,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._arq = arq
        self._batch_size = batch_size
        self._lease = timedelta(seconds=lease_s)
        self._tasks: dict[int, asyncio.Task[None]] = {}

    async def start(self, bulk_id: int) -> None:
        """Drive a job in the background; a no-op if this process already drives it.

        Async although it awaits nothing: it must run on the event loop (a sync background
        task would run in a worker thread, where no loop is running).
        """
        task = self._tasks.get(bulk_id)
        if task is not None and not task.done():
            return
        self._tasks[bulk_id] = asyncio.create_task(self._guarded(bulk_id), name=f"bulk:{bulk_id}")

    async def resume_unfinished(self) -> None:
        async with self._sessionmaker.begin() as session:
            ids = await bulk.resumable(session, now=utc_now())
        for bulk_id in ids:
            await self.start(bulk_id)

    async def wait(self, bulk_id: int) -> None:
        task = self._tasks.get(bulk_id)
        if task is not None:
            await asyncio.shield(task)

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _guarded(self, bulk_id: int) -> None:
        try:
            await self._run(bulk_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The lease runs out and a later start resumes the pending items.
            log.exception("bulk replay stopped", extra={"bulk_replay_id": bulk_id})

    async def _run(self, bulk_id: int) -> None:
        async with self._sessionmaker.begin() as session:
            now = utc_now()
            if not await bulk.claim(session, bulk_id, now=now, lease_until=now + self._lease):
                return
            job = await bulk.get(session, bulk_id)
            requested_by, role, reason = job.requested_by, job.role, job.reason
        while True:
            async with self._sessionmaker.begin() as session:
                # Renewing fails once someone cancelled the job: stop between items.
                if not await bulk.renew(session, bulk_id, lease_until=utc_now() + self._lease):
                    return
                batch = await bulk.pending_items(session, bulk_id, limit=self._batch_size)
            if not batch:
                break
            for item_id, correlation_id in batch:
                await self._replay_one(bulk_id, item_id, correlation_id, requested_by, role, reason)
        async with self._sessionmaker.begin() as session:
            await bulk.finish(session, bulk_id, now=utc_now())

    async def _replay_one(
        self, bulk_id: int, item_id: int, correlation_id: str, actor: str, role: str, reason: str
    ) -> None:
        async with self._sessionmaker.begin() as session:
            result = await bulk.replay_item(
                session,
                item_id,
                correlation_id,
                requested_by=actor,
                reason=reason,
                now=utc_now(),
            )
            if result.outcome is BulkItemOutcome.REPLAYED:
                # Each transaction's change is audited like a single replay, tied to its job.
                await audit.record(
                    session,
                    actor=actor,
                    role=role,
                    action="transaction.replay",
                    target=correlation_id,
                    reason=reason,
                    outcome="succeeded",
                    before={"state": result.before_state},
                    after={"state": TxState.PENDING.value, "run": result.run_number},
                    detail={"bulk_replay_id": bulk_id},
                )
        if result.outcome is BulkItemOutcome.REPLAYED:
            await try_enqueue_wakeup(self._arq, correlation_id)
