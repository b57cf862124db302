"""A token bucket per target system, kept in Redis so every worker draws from the same one."""

from redis.asyncio import Redis

# Redis's own clock, so workers on machines with skewed clocks still share one bucket.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], 3600)
return tostring(wait)
"""


class TokenBucket:
    """`take()` returns 0 when a call may go now, else the seconds until a token is free."""

    def __init__(self, redis: Redis, *, limits: dict[str, float], burst_s: float = 1.0) -> None:
        self._redis = redis
        self._limits = limits
        self._burst_s = burst_s
        self._script = redis.register_script(_TAKE)

    async def take(self, system: str) -> float:
        rate = self._limits.get(system)
        if not rate:
            return 0.0
        burst = max(1.0, rate * self._burst_s)
        wait = await self._script(keys=[f"concord:ratelimit:{system}"], args=[rate, burst])
        return float(wait)
