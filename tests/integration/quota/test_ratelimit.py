"""Per-second WhatsApp limits against a real Redis, and the fallback when Redis is gone."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

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
    first = await _admitted(limiter, limits, 100, recipients=100)
    assert 5 <= first <= 7  # the burst allowance: 0.1 s at 50/s, plus the first message
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
