"""Figures that are costly to read and the same for every caller, read at most once per
`max_age_s` per key and shared by every request in that time.

GET /metrics and the SLA routes aggregate the whole window: at a million transactions one
reading costs PostgreSQL one to four seconds, and four at once took four times as long each
(docs/performance.md). Without sharing, each signed-in executive's dashboard (it refreshes every
30 s) and each Prometheus server would pay for a reading of its own, and enough of them would
keep the database busy with the same question. Requests that arrive while a key is being read
wait for that reading instead of starting their own.

Keeping warm: a key asked for within the last `keep_warm_s` is read again in the background
(`refresh_due`, called by the API's keeper task) shortly before its reading reaches
`max_age_s`, so the next caller gets figures no older than `max_age_s` without waiting for
them. Without it the first executive after each quiet spell of `max_age_s` waited for the
whole reading (4-5 s at a million transactions, docs/performance.md).
"""

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

# How often the keeper looks for readings due (api.main); each look is a loop over a few keys.
KEEPER_TICK_S = 0.5


@dataclass(slots=True)
class _Entry(Generic[T]):
    read: Callable[[], Awaitable[T]]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    value: T | None = None
    read_at: float = -float("inf")  # time.monotonic() when the reading began
    took_s: float = 0.0  # how long the last reading took
    asked_at: float = -float("inf")  # the last caller's time.monotonic()


class SharedReadings(Generic[T]):
    """At most `capacity` keys are kept, the least recently asked for dropped first: a key is
    built from query parameters, which callers choose. Of those, the `warm_capacity` most
    recently asked for are kept warm, one reading at a time, so callers who vary parameters
    cannot make the keeper read more than that."""

    def __init__(
        self,
        max_age_s: float,
        *,
        capacity: int = 64,
        keep_warm_s: float = 0.0,
        warm_capacity: int = 8,
    ) -> None:
        self.max_age_s = max_age_s
        self.capacity = capacity
        self.keep_warm_s = keep_warm_s
        self.warm_capacity = warm_capacity
        self._entries: OrderedDict[Hashable, _Entry[T]] = OrderedDict()

    def _entry(self, key: Hashable, read: Callable[[], Awaitable[T]], asked_at: float) -> _Entry[T]:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(read)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        # The latest caller's way of reading is the keeper's: the same figures by definition.
        entry.read = read
        entry.asked_at = asked_at
        self._entries.move_to_end(key)
        return entry

    async def get(
        self, key: Hashable, read: Callable[[], Awaitable[T]], *, fresh: bool = False
    ) -> tuple[T, float]:
        """The reading for `key` and its age in seconds. `fresh` asks for one that began no
        earlier than this call (an HTTP `Cache-Control: no-cache`); it may still be shared with
        requests that arrived while it was read. `read` must not depend on the caller's
        request: the keeper calls it again later."""
        asked_at = time.monotonic()
        entry = self._entry(key, read, asked_at)

        def usable() -> bool:
            if entry.value is None:
                return False
            if fresh:
                return entry.read_at >= asked_at
            return time.monotonic() - entry.read_at < self.max_age_s

        if not usable():
            async with entry.lock:
                # Another request, or the keeper, may have read it while this one waited.
                if not usable():
                    await self._read(entry)
        assert entry.value is not None
        return entry.value, time.monotonic() - entry.read_at

    @staticmethod
    async def _read(entry: _Entry[T]) -> None:
        started = time.monotonic()
        entry.value = await entry.read()
        # Aged from the start: the figures are as of the moment the reading began.
        entry.read_at = started
        entry.took_s = time.monotonic() - started

    def _keeps_warm(self) -> bool:
        return self.keep_warm_s > 0 and self.max_age_s > 0

    def _due(self, entry: _Entry[T], now: float) -> bool:
        if now - entry.asked_at > self.keep_warm_s or entry.lock.locked():
            return False
        # Early enough that the new reading lands before the old one expires: the last reading's
        # time and half again (readings of the same key vary by a third at a million
        # transactions), plus a keeper tick.
        lead = 1.5 * entry.took_s + KEEPER_TICK_S
        return now - entry.read_at >= self.max_age_s - lead

    async def refresh_due(self) -> int:
        """Read again, one after another, the warm keys whose readings are about to expire;
        how many were read. A reading that fails is logged and left to the next caller."""
        if not self._keeps_warm():
            return 0
        warm = list(reversed(self._entries.values()))[: self.warm_capacity]
        refreshed = 0
        for entry in warm:
            if not self._due(entry, time.monotonic()):
                continue
            async with entry.lock:
                try:
                    await self._read(entry)
                except Exception:
                    log.warning("keeping a shared reading warm failed", exc_info=True)
                    continue
            refreshed += 1
        return refreshed

    async def keep_warm(self) -> None:
        """The keeper: runs until cancelled (the API's lifespan starts and stops it); returns at
        once if nothing is to be kept warm."""
        while self._keeps_warm():
            await self.refresh_due()
            await asyncio.sleep(KEEPER_TICK_S)
