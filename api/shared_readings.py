"""Figures that are costly to read and the same for every caller, read at most once per
`max_age_s` per key and shared by every request in that time.

GET /metrics and the SLA routes aggregate the whole window: at a million transactions one
reading costs PostgreSQL one to four seconds, and four at once took four times as long each
(docs/performance.md). Without sharing, each signed-in executive's dashboard (it refreshes every
30 s) and each Prometheus server would pay for a reading of its own, and enough of them would
keep the database busy with the same question. Requests that arrive while a key is being read
wait for that reading instead of starting their own.
"""

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class _Entry(Generic[T]):
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    value: T | None = None
    read_at: float = -float("inf")  # time.monotonic() when the reading began


class SharedReadings(Generic[T]):
    """At most `capacity` keys are kept, the least recently asked for dropped first: a key is
    built from query parameters, which callers choose."""

    def __init__(self, max_age_s: float, *, capacity: int = 64) -> None:
        self.max_age_s = max_age_s
        self.capacity = capacity
        self._entries: OrderedDict[Hashable, _Entry[T]] = OrderedDict()

    def _entry(self, key: Hashable) -> _Entry[T]:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        self._entries.move_to_end(key)
        return entry

    async def get(
        self, key: Hashable, read: Callable[[], Awaitable[T]], *, fresh: bool = False
    ) -> tuple[T, float]:
        """The reading for `key` and its age in seconds. `fresh` asks for one that began no
        earlier than this call (an HTTP `Cache-Control: no-cache`); it may still be shared with
        requests that arrived while it was read."""
        asked_at = time.monotonic()
        entry = self._entry(key)

        def usable() -> bool:
            if entry.value is None:
                return False
            if fresh:
                return entry.read_at >= asked_at
            return time.monotonic() - entry.read_at < self.max_age_s

        if not usable():
            async with entry.lock:
                # Another request may have read it while this one waited.
                if not usable():
                    started = time.monotonic()
                    entry.value = await read()
                    # Aged from the start: the figures are as of the moment the reading began.
                    entry.read_at = started
        assert entry.value is not None
        return entry.value, time.monotonic() - entry.read_at
