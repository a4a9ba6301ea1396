"""The API while its database is down: 503 with Retry-After and the API's error body, never 500, and
the same process answers normally again once the database is back.

The test runs its own PostgreSQL with durable commits (the session's server is shared with other
tests, and its commits are not durable): it is stopped fast (backends end with 57P01, new connections
are refused) or in immediate mode (as a crash: recovery at the next start), and started again.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from outbound_sender.embedded import EmbeddedPostgres, remove_tree
from outbound_sender.store.db import connect
from outbound_sender.store.migrations import migrate
from tests.integration.api.conftest import SMS, Api, api_settings, serving

DEADLINE_SECONDS = 60.0


@pytest.fixture
async def own_postgres() -> AsyncIterator[EmbeddedPostgres]:
    folder = Path(tempfile.mkdtemp(prefix="outbound-pg-down-"))
    server = await asyncio.to_thread(EmbeddedPostgres(folder / "data").start)
    try:
        conn = await connect(server.dsn())
        try:
            await migrate(conn)
        finally:
            await conn.close()
        yield server
    finally:
        await asyncio.to_thread(server.stop)
        remove_tree(folder)


def _stop(server: EmbeddedPostgres, mode: str) -> Callable[[], None]:
    def stop() -> None:
        server._pg("pg_ctl", "-D", str(server.data_dir), "-m", mode, "-w", "-t", "60", "stop")

    return stop


async def _requests(client: httpx.AsyncClient) -> list[httpx.Response]:
    """One request of each kind that reaches the database (the key is checked on every call)."""
    return [
        await client.post("/v1/messages", json=SMS),
        await client.get("/v1/messages"),
        await client.get("/v1/messages/1"),
        await client.post("/v1/messages/1/cancel"),
    ]


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {DEADLINE_SECONDS:g} s: {what}")
        await asyncio.sleep(0.2)


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, (response.request.url, response.status_code, response.text)
    assert int(response.headers["retry-after"]) > 0
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"]["code"] == "service_unavailable"
    assert body["correlation_id"] == response.headers["x-correlation-id"]


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_database_down_is_503_with_retry_after_and_the_api_recovers(
    own_postgres: EmbeddedPostgres, mode: str
) -> None:
    async with serving(own_postgres.dsn(), api_settings()) as api:
        await _round(api, own_postgres, mode)
        await _round(api, own_postgres, mode)  # a second outage on the reconnected pool


async def _round(api: Api, server: EmbeddedPostgres, mode: str) -> None:
    async with api.client() as client:
        created = await client.post("/v1/messages", json=SMS)
        assert created.status_code == 201, created.text
        await asyncio.to_thread(_stop(server, mode))
        for response in await _requests(client) + await _requests(client):
            _assert_unavailable(response)
        readiness = await client.get("/readyz")
        assert readiness.status_code == 503
        await asyncio.to_thread(server.start)

        async def created_again() -> bool:
            response = await client.post("/v1/messages", json=SMS)
            assert response.status_code in (201, 503), response.text
            return response.status_code == 201

        await _until(created_again, "the API creates messages again")
        listed = await client.get("/v1/messages", params={"limit": 200})
        assert listed.status_code == 200
        assert (await client.get("/readyz")).status_code == 200
