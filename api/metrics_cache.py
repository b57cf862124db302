"""The database's part of GET /metrics, computed at most once per `max_age_s` and shared by
every scrape in that time.

Its SLA gauges read the whole 24-hour window: at a million transactions about 1.5 s of
PostgreSQL per scrape, and four scrapes at once took 4.2 s each (docs/performance.md). The
route needs no key, so without this anyone who can reach it could keep the database busy; and
two Prometheus servers (an HA pair) would double the cost. Scrapes that arrive while the figures
are being computed wait for that computation instead of starting their own.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable


class SharedExposition:
    def __init__(self, max_age_s: float) -> None:
        self.max_age_s = max_age_s
        self._lock = asyncio.Lock()
        self._body = b""
        self._computed_at = -float("inf")

    def _fresh(self) -> bool:
        return time.monotonic() - self._computed_at < self.max_age_s

    async def get(self, compute: Callable[[], Awaitable[bytes]]) -> bytes:
        if self._fresh():
            return self._body
        async with self._lock:
            # Another scrape may have computed the figures while this one waited.
            if not self._fresh():
                started = time.monotonic()
                self._body = await compute()
                # Aged from the start: the figures are as of the moment the reading began.
                self._computed_at = started
        return self._body
