"""An in-process token bucket per API key for mutating calls.

Per process, not shared: with N API processes a key may make N times the burst. That is
acceptable for a brake on runaway scripts; a shared limit would live in Redis.
"""

import math
import time
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    def __init__(self, *, rate_per_minute: float, burst: int) -> None:
        self._rate_per_s = rate_per_minute / 60.0
        self._burst = float(burst)
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, *, now: float | None = None) -> float | None:
        """Spend one token; None when allowed, else the seconds until a token is available.

        No await inside, so on one event loop two requests cannot interleave here.
        """
        moment = time.monotonic() if now is None else now
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self._burst, moment)
        bucket.tokens = min(
            self._burst, bucket.tokens + (moment - bucket.updated) * self._rate_per_s
        )
        bucket.updated = moment
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self._rate_per_s


def retry_after_header(wait_s: float) -> str:
    # Retry-After takes whole seconds; rounding down would invite a request that fails again.
    return str(max(1, math.ceil(wait_s)))
