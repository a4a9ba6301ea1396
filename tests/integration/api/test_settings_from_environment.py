"""OUTBOUND_API_* settings read from the environment, as `outbound api` reads them, change what the
served API does (the app served by uvicorn on a migrated PostgreSQL)."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest

from outbound_sender.api.app import create_app
from outbound_sender.api.auth import create_key
from outbound_sender.config import load_settings
from outbound_sender.store import api_keys
from outbound_sender.store.db import connect
from tests.integration.api.conftest import EMAIL, ORG, count_messages, serving
from tests.workers import wait_for

QUIET = {
    "OUTBOUND_API_RATE_LIMIT_PER_SECOND": "0",
    "OUTBOUND_API_AUTH_FAILURES_MAX": "0",
    "OUTBOUND_API_NEGATIVE_CACHE_SECONDS": "0",
    "OUTBOUND_API_ACCESS_LOG": "false",
}


def from_environment(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for name, value in (QUIET | env).items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize(("limit", "expected"), [("4096", 413), (None, 201)])
async def test_the_body_limit_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, db_dsn: str, db: asyncpg.Connection, limit: str | None, expected: int
) -> None:
    from_environment(monkeypatch, **({"OUTBOUND_API_MAX_BODY_BYTES": limit} if limit else {}))
    message = EMAIL | {"body": "x" * 6000}  # over 4 KiB, far under the default 8 MiB
    async with serving(db_dsn, load_settings().api) as api, api.client() as client:
        response = await client.post("/v1/messages", json=message)
    assert response.status_code == expected, response.text[:300]
    assert await count_messages(db) == (0 if expected == 413 else 1)


@pytest.mark.parametrize(("seconds", "after_revocation"), [("300", 200), ("0", 401)])
async def test_a_revoked_key_works_until_the_key_cache_from_the_environment_expires(
    monkeypatch: pytest.MonkeyPatch, db_dsn: str, db: asyncpg.Connection, seconds: str, after_revocation: int
) -> None:
    from_environment(monkeypatch, OUTBOUND_API_KEY_CACHE_SECONDS=seconds)
    async with serving(db_dsn, load_settings().api) as api, api.client() as client:
        assert (await client.get("/v1/messages")).status_code == 200
        assert await api_keys.revoke(db, api.token.split("_")[1]) is not None
        assert (await client.get("/v1/messages")).status_code == after_revocation


@pytest.mark.parametrize("size", [2, 5])
async def test_the_api_holds_at_most_its_pool_size_from_the_environment_in_connections(
    monkeypatch: pytest.MonkeyPatch, db_dsn: str, db: asyncpg.Connection, size: int
) -> None:
    """Eight requests wait on a locked table: the API process holds exactly its pool's connections."""
    from_environment(monkeypatch, OUTBOUND_API_POOL_SIZE=str(size), OUTBOUND_API_KEY_CACHE_SECONDS="300")
    app = create_app(db_dsn, settings=load_settings().api)
    connections = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'outbound-api'"
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client,
    ):
        key = await create_key(app.state.api.pool, ORG, "tests")
        client.headers["Authorization"] = f"Bearer {key.token}"
        assert (await client.get("/v1/messages")).status_code == 200  # the key is cached from now on
        locker = await connect(db_dsn)
        try:
            transaction = locker.transaction()
            await transaction.start()
            await locker.execute("LOCK TABLE outbound_message IN ACCESS EXCLUSIVE MODE")
            requests = [asyncio.create_task(client.get("/v1/messages")) for _ in range(8)]
            await wait_for(db, f"SELECT ({connections}) = $1", size, timeout=30)
            await asyncio.sleep(0.5)  # and no more come
            assert await db.fetchval(connections) == size
            await transaction.rollback()
            assert {(await request).status_code for request in requests} == {200}
        finally:
            await locker.close()
