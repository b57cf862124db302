"""Claims: a first claim takes the lease and opens run 1 (on PostgreSQL in one statement), a
later claim finds the run still open, of two workers racing for a transaction one wins, and a
claim whose reads fail is claimable again once its lease runs out."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage import runs
from lineage.clock import utc_now
from lineage.enums import RunState, System, TxState
from lineage.models import BusinessTransaction, WorkflowRun
from tests.api.builders import add_transaction
from tests.dbutil import take_lease

SM = async_sessionmaker[AsyncSession]
LEASE = timedelta(seconds=60)


async def _received(sessionmaker: SM) -> str:
    async with sessionmaker.begin() as session:
        return (await add_transaction(session, state=TxState.RECEIVED)).correlation_id


async def _claim(sessionmaker: SM, cid: str, owner: str, now: datetime) -> runs.Claim | None:
    return await take_lease(sessionmaker, cid, owner, now, LEASE)


async def _stored(sessionmaker: SM, cid: str) -> tuple[BusinessTransaction, list[WorkflowRun]]:
    async with sessionmaker() as session:
        tx = await session.get(BusinessTransaction, cid)
        assert tx is not None
        found = await session.scalars(select(WorkflowRun).where(WorkflowRun.correlation_id == cid))
        return tx, list(found)


async def test_a_first_claim_takes_the_lease_and_opens_run_one(sessionmaker: SM) -> None:
    cid, now = await _received(sessionmaker), utc_now()

    claimed = await _claim(sessionmaker, cid, "w1", now)

    assert claimed is not None
    tx, [run] = await _stored(sessionmaker, cid)
    assert (tx.state, tx.run_count, tx.lease_owner) == (TxState.RUNNING, 1, "w1")
    assert tx.lease_expires_at == now + LEASE
    assert (run.number, run.trigger, run.state) == (1, "initial", RunState.RUNNING)
    assert (run.started_at, run.force_new_posting) == (now, False)
    # What the engine is handed is what was stored.
    assert (claimed.run.id, claimed.run.number, claimed.run.trigger) == (run.id, 1, "initial")
    assert claimed.run.force_new_posting is False
    assert claimed.transaction.state is TxState.RUNNING
    assert claimed.transaction.source_system is System.BILLING
    assert claimed.transaction.run_count == 1
    assert claimed.transaction.canonical == tx.canonical
    assert claimed.transaction.received_at.tzinfo is UTC
    columns = [a.key for a in inspect(BusinessTransaction).column_attrs]
    assert {c: getattr(claimed.transaction, c) for c in columns} == {
        c: getattr(tx, c) for c in columns
    }
    assert (claimed.step_states, claimed.outputs) == ({}, {})


async def test_a_claim_after_the_lease_ran_out_continues_the_open_run(sessionmaker: SM) -> None:
    cid, now = await _received(sessionmaker), utc_now()
    first = await _claim(sessionmaker, cid, "w1", now)
    assert first is not None

    assert await _claim(sessionmaker, cid, "w2", now + timedelta(seconds=1)) is None
    later = await _claim(sessionmaker, cid, "w2", now + LEASE + timedelta(seconds=1))

    assert later is not None
    assert later.run.id == first.run.id
    tx, stored = await _stored(sessionmaker, cid)
    assert (tx.run_count, tx.lease_owner, len(stored)) == (1, "w2", 1)


async def test_of_two_workers_claiming_at_once_one_wins(sessionmaker: SM) -> None:
    cids = [await _received(sessionmaker) for _ in range(5)]
    now = utc_now()

    for cid in cids:
        claims = await asyncio.gather(
            _claim(sessionmaker, cid, "w1", now), _claim(sessionmaker, cid, "w2", now)
        )
        won = [c for c in claims if c is not None]
        assert len(won) == 1
        tx, stored = await _stored(sessionmaker, cid)
        assert [r.id for r in stored] == [won[0].run.id]
        assert tx.lease_owner == won[0].transaction.lease_owner


class _ReadFailed(Exception):
    pass


async def _fail(_session: AsyncSession, _claimed: runs.Claim) -> None:
    raise _ReadFailed


async def test_a_claim_whose_reads_fail_is_claimable_once_its_lease_runs_out(
    sessionmaker: SM,
) -> None:
    # On PostgreSQL a first claim commits before the reads (runs.take), so their failure
    # leaves the lease held until it runs out; on SQLite it rolls the claim back.
    cid, now = await _received(sessionmaker), utc_now()
    with pytest.raises(_ReadFailed):
        await runs.take(sessionmaker, cid, owner="w1", lease_until=now + LEASE, now=now, then=_fail)

    later = await _claim(sessionmaker, cid, "w2", now + LEASE + timedelta(seconds=1))

    assert later is not None
    tx, [run] = await _stored(sessionmaker, cid)
    assert (tx.lease_owner, tx.run_count, tx.state) == ("w2", 1, TxState.RUNNING)
    assert (later.run.id, later.run.number) == (run.id, 1)
