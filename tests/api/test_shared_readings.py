"""SharedReadings on its own: one reading per key and max age, however many ask at once."""

import asyncio

from api.shared_readings import SharedReadings


class Counter:
    """A reading that counts how often it ran, and can be held open."""

    def __init__(self) -> None:
        self.runs = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self) -> int:
        self.runs += 1
        await self.gate.wait()
        return self.runs


async def test_within_the_max_age_a_key_is_read_once_and_its_age_grows() -> None:
    shared: SharedReadings[int] = SharedReadings(60)
    read = Counter()

    first, first_age = await shared.get("k", read)
    await asyncio.sleep(0.05)
    again, again_age = await shared.get("k", read)

    assert (first, again, read.runs) == (1, 1, 1)
    assert again_age >= 0.05 > first_age


async def test_each_key_has_its_own_reading() -> None:
    shared: SharedReadings[int] = SharedReadings(60)
    read = Counter()

    values = [await shared.get(key, read) for key in ("a", "b", "a")]

    assert [v for v, _ in values] == [1, 2, 1]


async def test_a_max_age_of_zero_reads_every_time() -> None:
    shared: SharedReadings[int] = SharedReadings(0)
    read = Counter()

    values = [(await shared.get("k", read))[0] for _ in range(3)]

    assert values == [1, 2, 3]


async def test_callers_at_once_share_the_reading_in_progress() -> None:
    shared: SharedReadings[int] = SharedReadings(60)
    read = Counter()
    read.gate.clear()

    waiting = [asyncio.create_task(shared.get("k", read)) for _ in range(5)]
    await asyncio.sleep(0.05)
    read.gate.set()
    values = await asyncio.gather(*waiting)

    assert [v for v, _ in values] == [1] * 5
    assert read.runs == 1


async def test_fresh_reads_again_unless_a_reading_began_after_the_call() -> None:
    shared: SharedReadings[int] = SharedReadings(60)
    read = Counter()
    await shared.get("k", read)

    fresh, _ = await shared.get("k", read, fresh=True)
    # Two fresh callers at once: the second arrives after the first's reading began, which
    # may not hold what the second was sent to see, so it waits and then reads again.
    read.gate.clear()
    both = [asyncio.create_task(shared.get("k", read, fresh=True)) for _ in range(2)]
    await asyncio.sleep(0.05)
    read.gate.set()
    values = await asyncio.gather(*both)

    assert fresh == 2
    assert sorted(v for v, _ in values) == [3, 4]


async def test_the_least_recently_asked_key_goes_first_beyond_the_capacity() -> None:
    shared: SharedReadings[int] = SharedReadings(60, capacity=2)
    read = Counter()
    await shared.get("a", read)  # 1
    await shared.get("b", read)  # 2
    await shared.get("a", read)  # still 1: "a" is now the most recent
    await shared.get("c", read)  # 3: "b" goes

    again = [(await shared.get(key, read))[0] for key in ("a", "c", "b")]

    assert again == [1, 3, 4]
