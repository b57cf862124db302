"""Duplicate and out-of-order deliveries to two live worker processes: each event up to three
times, shuffled per subscription, subscriptions sent side by side. One transaction per event,
nothing posted twice, and the CRM and ERP end as after the same events sent once, in order."""

import asyncio
import json
import random
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lineage.db import make_engine, make_sessionmaker
from lineage.enums import TxState
from lineage.models import BusinessTransaction
from tests.chaos.harness import EVENTS, System, deliver_webhook, running_system
from tests.support.databases import second_database
from tests.support.delivery_order import (
    Event,
    posted_twice,
    sandbox_state,
    shuffled,
    stories,
)

SEED = 20261126
# Seven events a subscription (created, two updates, two invoices finalized and paid).
SUBSCRIPTIONS = max(4, EVENTS // 20)


async def _send(system: System, plans: Sequence[Sequence[Event]]) -> dict[str, set[str]]:
    """Each plan in its own order, all plans at once; the correlation IDs each event got."""
    answers: dict[str, set[str]] = {}
    async with httpx.AsyncClient(base_url=system.api_url, timeout=60) as client:

        async def send(plan: Sequence[Event]) -> None:
            for event in plan:
                response = await deliver_webhook(client, json.dumps(event.body).encode())
                assert response.status_code in (200, 202), response.text
                answers.setdefault(event.id, set()).add(response.json()["correlation_id"])

        await asyncio.gather(*(send(plan) for plan in plans))
    return answers


async def _states(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[TxState, int]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(BusinessTransaction.state, func.count()).group_by(BusinessTransaction.state)
        )
        return {state: int(n) for state, n in rows}


async def _until_settled(
    sessionmaker: async_sessionmaker[AsyncSession], count: int
) -> dict[TxState, int]:
    # Ordered successors settle one after another: the wait grows with the size of the run.
    deadline = time.monotonic() + max(120.0, count / 5)
    while True:
        states = await _states(sessionmaker)
        if states.get(TxState.POSTED, 0) >= count or time.monotonic() > deadline:
            return states
        await asyncio.sleep(0.2)


async def _run(
    database_url: str, redis_url: str, plans: Sequence[Sequence[Event]], count: int
) -> tuple[dict[str, set[str]], dict[TxState, int], dict[str, object], list[tuple[str, str]]]:
    # The in-order and the shuffled run share one Redis database, one after the other.
    with redis.Redis.from_url(redis_url) as client:
        client.flushdb()
    engine = make_engine(database_url)
    try:
        with running_system(database_url, redis_url) as system:
            system.start_worker()
            system.start_worker()
            answers = await _send(system, plans)
            states = await _until_settled(make_sessionmaker(engine), count)
            exited = [w.returncode for w in system.workers if w.poll() is not None]
            assert exited == [], f"worker processes exited with {exited}"
            sandbox = system.erp_url.removesuffix("/erp")
            return answers, states, await sandbox_state(sandbox), await posted_twice(sandbox)
    finally:
        await engine.dispose()


async def test_shuffled_duplicates_end_as_the_in_order_run(
    database_url: str, redis_url: str, sqlite_template: Path, pg_template: str, tmp_path: Path
) -> None:
    story = stories(SUBSCRIPTIONS, tag=f"c{SEED}")
    events = [event for sub in story for event in sub]
    rng = random.Random(SEED)
    plans = [shuffled(sub, rng) for sub in story]

    # In order: one subscription after another, each event once.
    _, in_order_states, expected, in_order_doubled = await _run(
        database_url, redis_url, [events], len(events)
    )
    async with second_database(
        database_url,
        sqlite_template=sqlite_template,
        pg_template=pg_template,
        directory=tmp_path,
    ) as other_url:
        answers, states, actual, doubled = await _run(other_url, redis_url, plans, len(events))

    assert in_order_states == {TxState.POSTED: len(events)}
    assert states == {TxState.POSTED: len(events)}
    assert {event_id: len(cids) for event_id, cids in answers.items()} == {
        event.id: 1 for event in events
    }
    assert (doubled, in_order_doubled) == ([], [])
    assert actual == expected
