"""SharedReadings kept warm: the keeper reads recently asked keys again before they expire, so
callers get figures within the max age without waiting for a reading."""

import asyncio
import logging

import pytest

from api.shared_readings import SharedReadings
from tests.api.test_shared_readings import Counter


async def test_a_recently_asked_key_is_read_again_before_its_reading_expires() -> None:
    shared: SharedReadings[int] = SharedReadings(1.0, keep_warm_s=60)
    read = Counter()
    await shared.get("k", read)

    early = await shared.refresh_due()  # just read: not yet due
    await asyncio.sleep(0.6)  # due from 1.0 - (1.5 x the reading's time + 0.5 s)
    due = await shared.refresh_due()
    value, age = await shared.get("k", read)

    assert (early, due) == (0, 1)
    assert (value, read.runs) == (2, 2)
    assert age < 0.1


async def test_a_key_nobody_asked_for_within_keep_warm_s_is_left_to_expire() -> None:
    shared: SharedReadings[int] = SharedReadings(0.4, keep_warm_s=0.2)
    read = Counter()
    await shared.get("k", read)
    await asyncio.sleep(0.3)

    assert await shared.refresh_due() == 0
    assert read.runs == 1


@pytest.mark.parametrize(("max_age_s", "keep_warm_s"), [(1.0, 0.0), (0.0, 60.0)])
async def test_no_keeping_warm_without_a_keep_warm_time_or_a_max_age(
    max_age_s: float, keep_warm_s: float
) -> None:
    shared: SharedReadings[int] = SharedReadings(max_age_s, keep_warm_s=keep_warm_s)
    read = Counter()
    await shared.get("k", read)
    await asyncio.sleep(0.6)

    assert await shared.refresh_due() == 0


async def test_callers_get_the_current_reading_while_the_keeper_reads_the_next() -> None:
    shared: SharedReadings[int] = SharedReadings(1.0, keep_warm_s=60)
    read = Counter()
    await shared.get("k", read)
    await asyncio.sleep(0.6)

    read.gate.clear()
    keeper = asyncio.create_task(shared.refresh_due())
    await asyncio.sleep(0.05)
    during, _ = await asyncio.wait_for(shared.get("k", read), timeout=0.2)
    read.gate.set()
    await keeper
    after, _ = await shared.get("k", read)

    assert (during, after, read.runs) == (1, 2, 2)


async def test_only_the_most_recently_asked_keys_up_to_warm_capacity_are_kept_warm() -> None:
    shared: SharedReadings[int] = SharedReadings(1.0, keep_warm_s=60, warm_capacity=2)
    reads = {key: Counter() for key in "abc"}
    for key in "abcb":
        await shared.get(key, reads[key])
    await asyncio.sleep(0.6)

    assert await shared.refresh_due() == 2
    assert {key: r.runs for key, r in reads.items()} == {"a": 1, "b": 2, "c": 2}


async def test_a_failed_keeper_reading_is_logged_and_leaves_the_last_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    shared: SharedReadings[int] = SharedReadings(1.0, keep_warm_s=60)
    outcomes: list[int | Exception] = [1, RuntimeError("database down"), 3]

    async def read() -> int:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    await shared.get("k", read)
    await asyncio.sleep(0.6)
    with caplog.at_level(logging.WARNING, logger="api.shared_readings"):
        refreshed = await shared.refresh_due()
    kept, _ = await shared.get("k", read)
    await asyncio.sleep(0.5)  # past the max age: the next caller reads for itself
    renewed, _ = await shared.get("k", read)

    assert refreshed == 0
    assert "keeping a shared reading warm failed" in caplog.text
    assert (kept, renewed) == (1, 3)


async def test_the_keeper_runs_until_cancelled() -> None:
    shared: SharedReadings[int] = SharedReadings(0.6, keep_warm_s=60)
    read = Counter()
    await shared.get("k", read)

    keeper = asyncio.create_task(shared.keep_warm())
    await asyncio.sleep(1.3)
    keeper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await keeper
    runs = read.runs
    await asyncio.sleep(0.6)

    assert runs >= 2  # due from an age of 0.1 s, looked at every 0.5 s
    assert read.runs == runs


async def test_with_nothing_to_keep_warm_the_keeper_returns_at_once() -> None:
    for shared in (SharedReadings[int](15), SharedReadings[int](0, keep_warm_s=60)):
        await asyncio.wait_for(shared.keep_warm(), timeout=1)
