"""Per-organisation request rate limit: GCRA (the generic cell rate algorithm, a token bucket kept as
one timestamp per key).

`gcra` is the pure rule. LocalRateLimiter keeps the timestamps in this process (one API replica, or
a per-replica limit); RedisRateLimiter keeps them in Redis with one atomic script and Redis's clock,
so every replica shares one limit. If Redis cannot be reached the request is let through and a
warning logged: the limit protects the database, losing it for a moment is better than refusing all.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("OutboundMessageService")


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after: float = 0.0  # seconds until one more request would be allowed

    @property
    def retry_after_header(self) -> str:
        """Retry-After is whole seconds; round up so the client never comes back too early."""
        return str(max(1, math.ceil(self.retry_after)))


def gcra(tat: float, now: float, rate: float, burst: int) -> tuple[float, Decision]:
    """One request at `now` against theoretical arrival time `tat`; returns the new tat and the decision."""
    interval = 1.0 / rate
    new_tat = max(tat, now) + interval
    allow_at = new_tat - burst * interval
    if now < allow_at:
        return tat, Decision(False, allow_at - now)
    return new_tat, Decision(True)


class RateLimiter(Protocol):
    async def hit(self, key: str) -> Decision: ...

    async def aclose(self) -> None: ...


class Unlimited:
    async def hit(self, key: str) -> Decision:
        return Decision(True)

    async def aclose(self) -> None:
        return None


class LocalRateLimiter:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tat: dict[str, float] = {}

    async def hit(self, key: str) -> Decision:
        tat, decision = gcra(self._tat.get(key, 0.0), self._clock(), self.rate, self.burst)
        self._tat[key] = tat
        return decision

    async def aclose(self) -> None:
        return None


# KEYS[1] the bucket; ARGV rate (per second), burst. Redis's own clock, so replicas agree.
_GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = 1000000 / tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local new_tat = math.max(tat, now) + interval
local allow_at = new_tat - tonumber(ARGV[2]) * interval
if now < allow_at then
  return {0, math.ceil(allow_at - now)}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0}
"""


class RedisRateLimiter:
    def __init__(self, client: aioredis.Redis, rate: float, burst: int, prefix: str = "outbound:api:rate:"):
        self._client, self.rate, self.burst, self._prefix = client, rate, burst, prefix
        self._script = client.register_script(_GCRA_LUA)

    async def hit(self, key: str) -> Decision:
        try:
            allowed, wait_us = await self._script(keys=[self._prefix + key], args=[self.rate, self.burst])
        except (RedisError, OSError) as error:
            log.warning("rate limit unavailable, request let through", extra={"fields": {"error": repr(error)}})
            return Decision(True)
        return Decision(bool(allowed), int(wait_us) / 1_000_000)

    async def aclose(self) -> None:
        await self._client.aclose()


def build_limiter(rate: float, burst: int, redis_url: str | None) -> RateLimiter:
    if rate <= 0:
        return Unlimited()
    if redis_url:
        return RedisRateLimiter(aioredis.from_url(redis_url), rate, burst)
    return LocalRateLimiter(rate, burst)
