"""Per-organisation request rate limit: 429 with Retry-After; shared through Redis across replicas."""

from __future__ import annotations

import asyncio

import asyncpg
import redis.asyncio as aioredis

from outbound_sender.api.ratelimit import RedisRateLimiter, build_limiter
from outbound_sender.embedded import EmbeddedRedis
from tests.integration.api.conftest import SMS, api_settings, count_messages, serving


async def test_over_the_rate_the_api_answers_429_with_retry_after(db_dsn: str, db: asyncpg.Connection) -> None:
    settings = api_settings(rate_limit_per_second=0.5, rate_limit_burst=3)
    async with serving(db_dsn, settings) as api, api.client() as acme, api.client(api.other_token) as globex:
        codes = [(await acme.post("/v1/messages", json=SMS)).status_code for _ in range(4)]
        limited = await acme.get("/v1/messages")
        other_org = await globex.get("/v1/messages")
    assert codes == [201, 201, 201, 429]
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 2
    assert other_org.status_code == 200  # the limit is per organisation
    assert await count_messages(db) == 3


async def test_replicas_share_one_limit_through_redis(redis_server: EmbeddedRedis) -> None:
    clients = [aioredis.from_url(redis_server.url) for _ in range(2)]
    replicas = [RedisRateLimiter(client, rate=1.0, burst=4, prefix="test:shared:") for client in clients]
    try:
        await clients[0].delete("test:shared:acme")
        decisions = [await replicas[n % 2].hit("acme") for n in range(6)]
    finally:
        for replica in replicas:
            await replica.aclose()
    assert [d.allowed for d in decisions] == [True] * 4 + [False] * 2
    assert 0 < decisions[-1].retry_after <= 1.0
    assert decisions[-1].retry_after_header == "1"


async def test_redis_down_lets_requests_through() -> None:
    limiter = build_limiter(1.0, 1, "redis://127.0.0.1:1/0")
    try:
        decisions = await asyncio.gather(*(limiter.hit("acme") for _ in range(3)))
    finally:
        await limiter.aclose()
    assert all(d.allowed for d in decisions)


async def test_api_with_redis_limiter(db_dsn: str, redis_server: EmbeddedRedis) -> None:
    limiter = build_limiter(0.5, 2, redis_server.url)
    settings = api_settings(rate_limit_per_second=0.5, rate_limit_burst=2)
    async with serving(db_dsn, settings, limiter=limiter) as api, api.client() as client:
        codes = [(await client.get("/v1/messages")).status_code for _ in range(3)]
    await limiter.aclose()
    assert codes == [200, 200, 429]


async def test_unlimited_when_rate_is_zero(db_dsn: str) -> None:
    async with serving(db_dsn, api_settings(rate_limit_per_second=0)) as api, api.client() as client:
        responses = await asyncio.gather(*(client.get("/v1/messages") for _ in range(30)))
    assert {r.status_code for r in responses} == {200}
