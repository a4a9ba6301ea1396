"""Per-second WhatsApp limits against a real Redis, and the fallback when Redis is gone."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Gauge

from outbound_sender.embedded import EmbeddedRedis
from outbound_sender.quota.ratelimit import Limits, WhatsAppRateLimiter


@pytest.fixture
async def limiter(redis_server: EmbeddedRedis) -> AsyncIterator[WhatsAppRateLimiter]:
    client = aioredis.from_url(redis_server.url)
    yield WhatsAppRateLimiter(client, prefix=f"t{uuid.uuid4().hex[:8]}")
    await client.aclose()


async def _admitted(limiter: WhatsAppRateLimiter, limits: Limits, calls: int, recipients: int) -> int:
    verdicts = await asyncio.gather(*[limiter.check("PN1", f"+1555{n % recipients:07d}", limits) for n in range(calls)])
    return sum(v.allowed for v in verdicts)


async def test_throughput_admits_the_burst_then_the_steady_rate(limiter: WhatsAppRateLimiter) -> None:
    limits = Limits(messages_per_second=50, pair_interval_seconds=0.001, burst_seconds=0.1)
    started = time.monotonic()
    first = await _admitted(limiter, limits, 100, recipients=100)
    spanned = time.monotonic() - started  # 100 concurrent calls open connections: not instantaneous
    # the burst allowance (0.1 s at 50/s, plus the first message), and what the span let through
    assert 5 <= first <= 6 + math.ceil(50 * spanned), (first, spanned)
    loop = asyncio.get_running_loop()
    deadline, admitted, n = loop.time() + 1.0, 0, 0
    while loop.time() < deadline:  # constant pressure for one second
        n += 1
        admitted += (await limiter.check("PN1", f"+1666{n:07d}", limits)).allowed
        await asyncio.sleep(0.002)
    assert 40 <= admitted <= 56  # 50/s: never more than rate x time + burst, never far less


async def test_a_refusal_says_how_long_to_wait(limiter: WhatsAppRateLimiter) -> None:
    limits = Limits(messages_per_second=10, pair_interval_seconds=0.001, burst_seconds=0)
    assert (await limiter.check("PN1", "+15550000001", limits)).allowed
    refused = await limiter.check("PN1", "+15550000002", limits)
    assert not refused.allowed
    assert refused.reason == "throughput"
    assert 0.05 < refused.wait_seconds <= 0.1


async def test_the_pair_rate_spaces_messages_to_one_recipient(limiter: WhatsAppRateLimiter) -> None:
    limits = Limits(messages_per_second=1000, pair_interval_seconds=6)
    assert (await limiter.check("PN1", "+15550000001", limits)).allowed
    again = await limiter.check("PN1", "+15550000001", limits)
    assert (again.allowed, again.reason) == (False, "pair")
    assert 5.5 < again.wait_seconds <= 6
    assert (await limiter.check("PN1", "+15550000002", limits)).allowed


async def test_a_refused_send_consumes_nothing(limiter: WhatsAppRateLimiter) -> None:
    limits = Limits(messages_per_second=1000, pair_interval_seconds=6, burst_seconds=0)
    assert (await limiter.check("PN1", "+15550000001", limits)).allowed
    for _ in range(20):  # refused by the pair rate: must not use the number's throughput
        assert not (await limiter.check("PN1", "+15550000001", limits)).allowed
    assert (await limiter.check("PN1", "+15550000009", limits)).allowed


async def test_redis_killed_mid_run_falls_back_to_stricter_local_limits() -> None:
    server = EmbeddedRedis(Path(tempfile.mkdtemp())).start()
    client = aioredis.from_url(server.url, socket_connect_timeout=0.2, socket_timeout=0.2)
    limiter = WhatsAppRateLimiter(client, fallback_divisor=4)
    limits = Limits(messages_per_second=40, pair_interval_seconds=0.001, burst_seconds=0.5)
    try:
        assert (await limiter.check("PN1", "+15550000001", limits)).allowed
        assert not limiter.in_fallback
        server.kill()
        admitted = await _admitted(limiter, limits, 100, recipients=100)
        assert limiter.in_fallback
        assert 1 <= admitted <= 6  # 0.5 s burst at 40/4 = 10/s
    finally:
        await client.aclose()
        server.stop()


# The rate properties: a steady pressure for WINDOW seconds; BURST is the burst allowance.
WINDOW, BURST = 0.6, 0.4


@dataclass(frozen=True)
class Round:
    sent: float
    answered: float
    admitted: int
    refused: bool


@dataclass
class Pressure:
    rounds: list[Round]
    fallback: bool

    @property
    def admitted(self) -> int:
        return sum(r.admitted for r in self.rounds)

    def at_most(self, rate: float) -> int:
        """GCRA never admits more than the first call, the burst, and rate x the time the calls
        spanned (rounded up, plus one for the rounding of waits)."""
        spanned = self.rounds[-1].answered - self.rounds[0].sent
        return 1 + math.ceil(rate * (BURST + spanned)) + 1

    def at_least(self, rate: float) -> tuple[int, float] | None:
        """Between two refusals (the limiter was full both times) GCRA admits rate x the time
        between them, minus what a refusal-free stretch longer than the burst allowance let go
        (the caller was too slow to use it: a busy machine). Returns (admitted in that span,
        the least it may be), or None when fewer than two rounds met a refusal."""
        full = [i for i, r in enumerate(self.rounds) if r.refused]
        if len(full) < 2:
            return None
        first, last = self.rounds[full[0]], self.rounds[full[-1]]
        # after a refusal the limiter's clock is more than BURST ahead: only a longer stretch loses
        lost = sum(max(0.0, self.rounds[j].answered - self.rounds[i].sent - BURST) for i, j in itertools.pairwise(full))
        per_round = max(r.admitted for r in self.rounds)  # calls at the span's edges may fall either side
        admitted = sum(r.admitted for r in self.rounds[full[0] + 1 : full[-1] + 1])
        return admitted, rate * (last.sent - first.answered - lost) - 2 - per_round


async def _pressure(limiter: WhatsAppRateLimiter, limits: Limits) -> Pressure:
    """Concurrent checks, 50 ms worth of the rate at a time, until WINDOW has passed."""
    per_round = max(2, math.ceil(limits.messages_per_second * 0.05))
    result = Pressure([], fallback=False)
    assert limiter.client is not None
    await asyncio.gather(*[limiter.client.ping() for _ in range(per_round)])  # open the connections first
    started = time.monotonic()
    while time.monotonic() - started < WINDOW:
        sent, n = time.monotonic(), len(result.rounds) * per_round
        verdicts = await asyncio.gather(*[limiter.check("PN1", f"+1777{n + k:07d}", limits) for k in range(per_round)])
        admitted = sum(v.allowed for v in verdicts)
        result.rounds.append(Round(sent, time.monotonic(), admitted, admitted < per_round))
        result.fallback |= any(v.fallback for v in verdicts)
    return result


@settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(rate=st.floats(min_value=1, max_value=500, allow_nan=False).map(lambda r: round(r, 3)))
@example(rate=80.0)  # Meta's default: an interval of 12.5 ms
@example(rate=30.0)  # 33.33... ms
@example(rate=1000 / 7)  # 7 ms, as a float that is not exactly representable
@example(rate=100.0)
@example(rate=500.0)
@example(rate=1.0)
def test_the_limit_holds_in_redis_at_every_rate(redis_server: EmbeddedRedis, rate: float) -> None:
    """Admitted = the burst plus rate x time, within tolerance, and never a fallback (Redis is up):
    Pressure.at_most and Pressure.at_least (90 % of it) say how much. The lower bound needs the
    limiter to have refused at least twice; a client too slow to reach the rate had every call
    admitted, which the upper bound and the fallback check cover."""

    async def run() -> tuple[Pressure, bool]:
        client = aioredis.from_url(redis_server.url)
        limiter = WhatsAppRateLimiter(client, prefix=f"p{uuid.uuid4().hex[:8]}")
        limits = Limits(messages_per_second=rate, pair_interval_seconds=0.001, burst_seconds=BURST)
        try:
            return await _pressure(limiter, limits), limiter.in_fallback
        finally:
            await client.aclose()

    p, in_fallback = asyncio.run(run())
    assert not p.fallback, f"{rate}/s fell back to the in-process limit"
    assert not in_fallback
    assert p.admitted <= p.at_most(rate), (rate, p.admitted)
    saturated = p.at_least(rate)
    if saturated is not None:  # else the client (a starved CPU) never asked faster than the rate
        admitted, least = saturated
        assert admitted >= 0.9 * least, (rate, admitted, least)


async def test_an_error_redis_answers_is_not_logged_as_unreachable(
    limiter: WhatsAppRateLimiter, caplog: pytest.LogCaptureFixture
) -> None:
    """A key of the wrong type makes the script fail with an answer (WRONGTYPE): Redis is there.
    The limiter falls back (the gauge says so) and says what happened, not "unreachable"."""
    registry = CollectorRegistry()
    limiter.gauge = Gauge("fallback", "in-process limits in force", registry=registry)
    assert limiter.client is not None
    await limiter.client.hset(f"{limiter.prefix}:tput:PN1", "broken", "1")
    limits = Limits(messages_per_second=80, pair_interval_seconds=0.001)
    with caplog.at_level(logging.ERROR, logger="outbound.ratelimit"):
        verdict = await limiter.check("PN1", "+15550000001", limits)
    messages = [r.getMessage() for r in caplog.records]
    assert not any("unreachable" in m for m in messages), messages
    assert any(m.startswith("Redis rejected the rate-limit script") for m in messages), messages
    assert verdict.fallback
    assert limiter.in_fallback
    assert registry.get_sample_value("fallback") == 1
    await limiter.client.delete(f"{limiter.prefix}:tput:PN1")
    assert not (await limiter.check("PN1", "+15550000002", limits)).fallback
    assert registry.get_sample_value("fallback") == 0
