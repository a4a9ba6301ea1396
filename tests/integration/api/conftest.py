"""The API served by uvicorn on loopback, in the test's event loop, on a fresh migrated database."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import APIRouter, FastAPI

from outbound_sender.api.app import api_pool, create_app
from outbound_sender.api.auth import create_key
from outbound_sender.api.ratelimit import RateLimiter
from outbound_sender.api.server import api_server
from outbound_sender.api.settings import ApiSettings
from outbound_sender.embedded import free_port
from outbound_sender.metrics import Metrics

ORG = "acme"
OTHER_ORG = "globex"


@dataclass
class Api:
    url: str
    token: str
    other_token: str
    app: FastAPI
    metrics: Metrics

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30, **kwargs)


def api_settings(**overrides: Any) -> ApiSettings:
    values: dict[str, Any] = {
        "rate_limit_per_second": 0,
        "key_cache_seconds": 0,
        "negative_cache_seconds": 0,
        "auth_failures_max": 0,
        "access_log": False,
    }
    return ApiSettings(**(values | overrides))


@contextlib.asynccontextmanager
async def serving(
    dsn: str,
    settings: ApiSettings | None = None,
    limiter: RateLimiter | None = None,
    extra_routers: Sequence[APIRouter] = (),
    **app_options: Any,
) -> AsyncIterator[Api]:
    """Keys for two organisations, and the app served by uvicorn on a free loopback port
    (`app_options`: more keyword arguments of create_app)."""
    settings = settings or api_settings()
    pool = await api_pool(dsn, 8)
    try:
        acme, globex = await create_key(pool, ORG, "tests"), await create_key(pool, OTHER_ORG, "tests")
        metrics = Metrics()
        app = create_app(
            pool=pool, settings=settings, metrics=metrics, limiter=limiter, extra_routers=extra_routers, **app_options
        )
        port = free_port()
        server = api_server(app, "127.0.0.1", port, settings)
        task = asyncio.create_task(server.serve())
        try:
            async with asyncio.timeout(10):
                while not server.started:
                    await asyncio.sleep(0.01)
            yield Api(f"http://127.0.0.1:{port}", acme.token, globex.token, app, metrics)
        finally:
            server.should_exit = True
            await task
    finally:
        await pool.close()


@pytest.fixture
async def api(db_dsn: str) -> AsyncIterator[Api]:
    async with serving(db_dsn) as served:
        yield served


@pytest.fixture
async def client(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client() as c:
        yield c


async def count_messages(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT count(*) FROM outbound_message"))


SMS = {"channel": "SMS", "to": "+14155552671", "body": "Your code is 1234"}
EMAIL = {"channel": "EMAIL", "to": "ada@example.com", "subject": "Hello", "body": "Welcome aboard"}
WHATSAPP = {
    "channel": "WHATSAPP",
    "to": "+33612345678",
    "template_code": "appointment_reminder",
    "template_language": "fr",
    "template_params": {"1": "mardi"},
}
