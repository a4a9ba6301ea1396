"""OUTBOUND_API_* settings read from the environment, as `outbound api` reads them, change what the
served API does (the app served by uvicorn on a migrated PostgreSQL)."""

from __future__ import annotations

import asyncpg
import pytest

from outbound_sender.config import load_settings
from outbound_sender.store import api_keys
from tests.integration.api.conftest import EMAIL, count_messages, serving

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
