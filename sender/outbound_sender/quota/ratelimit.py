"""Per-second WhatsApp limits: GCRA in Redis, with a conservative in-process fallback.

Two limits guard every WhatsApp send (Meta's throughput limits, docs/quota.md):
- throughput per business phone number: `messages_per_second` (Meta's default 80, up to 1,000);
- the pair rate: one message to the same recipient every `pair_interval_seconds` (about 6 s).

Both are checked by one Lua script, atomically: a send is admitted only when both allow it, and
only then are both recorded. The script reads Redis' own clock (TIME), so workers' clocks don't
matter. GCRA keeps one timestamp per key (the theoretical arrival time) and needs no cleanup:
keys expire when idle.

Times in the script are milliseconds with a fraction (80 msg/s is one message every 12.5 ms):
timestamps are stored with their fraction, the key expiry (`PX`, an integer for Redis) is rounded
up, and waits are returned rounded up to a whole millisecond (a Lua number returned to Redis loses
its fraction: rounding down would turn a short wait into a busy loop).

When Redis cannot be used, the same algorithm runs in process with the throughput divided by
`fallback_divisor` (other pods are doing the same blind), the fallback is reported in a gauge and
a log line, and the daily quota (PostgreSQL) still holds. The log line tells the two causes apart:
"Redis unreachable" for a connection failure or timeout, "Redis rejected the rate-limit script"
for any other error Redis answers (a bug or a misconfigured server, which reconnecting won't fix).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from prometheus_client import Gauge
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("outbound.ratelimit")

# Failures to reach Redis at all (refused, reset, timed out, still loading its data set); any other
# RedisError is an answer from a reachable server.
CONNECTION_FAILURES = (RedisConnectionError, RedisTimeoutError, OSError)

# KEYS: [number key, pair key]; ARGV: [number interval ms, number burst ms, pair interval ms]
GCRA_TWO_KEYS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local function check(key, interval, burst)
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local wait = tat - burst - now
  if wait > 0 then return tat, wait end
  return tat + interval, 0
end
local n_interval, n_burst, p_interval = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local n_tat, n_wait = check(KEYS[1], n_interval, n_burst)
local p_tat, p_wait = check(KEYS[2], p_interval, 0)
local wait = math.max(n_wait, p_wait)
if wait > 0 then return {0, math.ceil(wait), math.ceil(n_wait), math.ceil(p_wait)} end
redis.call('SET', KEYS[1], string.format('%.3f', n_tat), 'PX', math.ceil(n_tat - now + n_burst) + 1000)
redis.call('SET', KEYS[2], string.format('%.3f', p_tat), 'PX', math.ceil(p_tat - now) + 1000)
return {1, 0, 0, 0}
"""


@dataclass(frozen=True, slots=True)
class Limits:
    messages_per_second: float = 80.0
    pair_interval_seconds: float = 6.0
    burst_seconds: float = 0.1  # how far ahead of the steady rate a burst may run

    def number_interval_ms(self, divisor: float = 1.0) -> float:
        return 1000.0 * divisor / self.messages_per_second


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    wait_seconds: float = 0.0
    reason: str = ""  # "throughput" | "pair" when refused
    fallback: bool = False


class LocalGcra:
    """The same two-key GCRA in process memory (fallback, and a reference for tests)."""

    def __init__(self, clock: object = time.monotonic) -> None:
        self._tat: dict[str, float] = {}
        self._clock = clock

    def check(self, number_key: str, pair_key: str, limits: Limits, divisor: float) -> Verdict:
        now = self._clock() * 1000  # type: ignore[operator]
        n_interval, burst = limits.number_interval_ms(divisor), limits.burst_seconds * 1000
        n_tat = max(self._tat.get(number_key, now), now)
        p_tat = max(self._tat.get(pair_key, now), now)
        n_wait, p_wait = n_tat - burst - now, p_tat - now
        if n_wait > 0 or p_wait > 0:
            return _refused(n_wait, p_wait, fallback=True)
        self._tat[number_key] = n_tat + n_interval
        self._tat[pair_key] = p_tat + limits.pair_interval_seconds * 1000
        return Verdict(True, fallback=True)


def _refused(n_wait: float, p_wait: float, *, fallback: bool = False) -> Verdict:
    reason = "pair" if p_wait >= n_wait else "throughput"
    return Verdict(False, max(n_wait, p_wait) / 1000.0, reason, fallback)


class WhatsAppRateLimiter:
    def __init__(
        self,
        client: aioredis.Redis | None,
        *,
        fallback_divisor: float = 4.0,
        prefix: str = "wa",
        gauge: Gauge | None = None,
        processes: int = 1,
    ) -> None:
        """Without a client (no Redis configured) the limits are kept in process, each of the pod's
        `processes` worker processes taking its share of the number's rate; with one, Redis keeps
        them and the stricter fallback (shared likewise) covers outages."""
        self.client = client
        self.local_divisor = float(processes)
        self.fallback_divisor = fallback_divisor * processes
        self.prefix = prefix
        self.local = LocalGcra()
        self.in_fallback = False
        self.fallback_cause = ""  # "unreachable" | "script_error" while in fallback
        self.gauge = gauge
        self._script = client.register_script(GCRA_TWO_KEYS) if client is not None else None

    def _keys(self, phone_number_id: str, recipient: str) -> tuple[str, str]:
        return f"{self.prefix}:tput:{phone_number_id}", f"{self.prefix}:pair:{phone_number_id}:{recipient}"

    async def check(self, phone_number_id: str, recipient: str, limits: Limits) -> Verdict:
        number_key, pair_key = self._keys(phone_number_id, recipient)
        if self._script is None:
            return self.local.check(number_key, pair_key, limits, self.local_divisor)
        try:
            args = [limits.number_interval_ms(), limits.burst_seconds * 1000, limits.pair_interval_seconds * 1000]
            allowed, _wait, n_wait, p_wait = await self._script(keys=[number_key, pair_key], args=args)
        except (RedisError, OSError) as error:
            self._enter_fallback(error)
            return self.local.check(number_key, pair_key, limits, self.fallback_divisor)
        self._leave_fallback()
        return Verdict(True) if allowed else _refused(float(n_wait), float(p_wait))

    def _enter_fallback(self, error: Exception) -> None:
        """Logged once per fallback episode and cause (a cause that changes is logged again)."""
        cause = "unreachable" if isinstance(error, CONNECTION_FAILURES) else "script_error"
        if not self.in_fallback or cause != self.fallback_cause:
            message = (
                "Redis unreachable: WhatsApp rate limits fall back to in-process limits"
                if cause == "unreachable"
                else "Redis rejected the rate-limit script: WhatsApp rate limits fall back to in-process limits"
            )
            fields = {"error": repr(error), "cause": cause, "divisor": self.fallback_divisor}
            log.error(message, extra={"fields": fields})
        self.in_fallback = True
        self.fallback_cause = cause
        if self.gauge is not None:
            self.gauge.set(1)

    def _leave_fallback(self) -> None:
        if self.in_fallback:
            log.warning("Redis answering again: WhatsApp rate limits back in Redis")
        self.in_fallback = False
        self.fallback_cause = ""
        if self.gauge is not None:
            self.gauge.set(0)
