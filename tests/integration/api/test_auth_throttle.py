"""Guessing API keys: failed authentications are throttled per client address, and an unknown key id
is looked up once per negative-cache period. Before, 400 guesses were 400 answers of 401, each a query."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import httpx
import pytest

from outbound_sender.api.auth import new_key
from outbound_sender.store import api_keys
from tests.integration.api.conftest import api_settings, serving

GUESSES = 400


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every key id the API asks the database about."""
    seen: list[str] = []
    real = api_keys.lookup

    async def counting(conn: api_keys.Executor, key_id: str) -> asyncpg.Record | None:
        seen.append(key_id)
        return await real(conn, key_id)

    monkeypatch.setattr(api_keys, "lookup", counting)
    return seen


async def _guess(client: httpx.AsyncClient, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token or new_key().token}"}
    return await client.get("/v1/messages", headers=headers)


async def test_guesses_from_one_address_are_throttled_without_database_lookups(db_dsn: str, lookups: list[str]) -> None:
    settings = api_settings(auth_failures_max=10, auth_failure_window_seconds=600)  # key cache off
    async with serving(db_dsn, settings) as api, httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        assert (await _guess(client, api.token)).status_code == 200  # a key this API has seen work
        lookups.clear()
        statuses: dict[int, int] = {}
        last: httpx.Response | None = None
        for _ in range(GUESSES):
            last = await _guess(client)
            statuses[last.status_code] = statuses.get(last.status_code, 0) + 1
        assert statuses == {401: 10, 429: GUESSES - 10}
        assert last is not None
        assert last.json()["error"]["code"] == "auth_throttled"
        assert 0 < int(last.headers["retry-after"]) <= 600
        assert len(lookups) == 10, "a throttled guess never reaches the database"
        no_key = await client.get("/v1/messages")  # no key: nothing guessed, nothing looked up
        assert no_key.status_code == 401
        # A key that worked before the block keeps working from the blocked address (clients behind
        # the same proxy as a guesser), checked against the database as usual; a new key does not.
        assert (await _guess(client, api.token)).status_code == 200
        assert len(lookups) == 11
        assert (await _guess(client, api.other_token)).status_code == 429


async def test_the_address_may_try_again_after_the_window(db_dsn: str) -> None:
    settings = api_settings(auth_failures_max=3, auth_failure_window_seconds=2)
    async with serving(db_dsn, settings) as api, httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        assert [(await _guess(client)).status_code for _ in range(4)] == [401, 401, 401, 429]
        deadline = time.monotonic() + 60
        while (response := await _guess(client, api.token)).status_code == 429:
            assert time.monotonic() < deadline, "still throttled long after the window"
            await asyncio.sleep(0.2)
        assert response.status_code == 200


async def test_an_unknown_key_id_is_looked_up_once_per_negative_cache_period(db_dsn: str, lookups: list[str]) -> None:
    settings = api_settings(negative_cache_seconds=300)
    guess = new_key()
    async with serving(db_dsn, settings) as api, httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        results = [(await _guess(client, guess.token)).status_code for _ in range(50)]
        assert results == [401] * 50
        assert lookups.count(guess.key_id) == 1
        # Known keys are unaffected: each is looked up as before (key cache off in these tests).
        statuses = [(await _guess(client, api.token)).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]


@pytest.mark.parametrize(
    "env", [{"OUTBOUND_API_AUTH_FAILURES_MAX": "-1"}, {"OUTBOUND_API_NEGATIVE_CACHE_SECONDS": "x"}]
)
def test_bad_settings_are_refused(monkeypatch: pytest.MonkeyPatch, env: dict[str, Any]) -> None:
    from outbound_sender.config import load_settings
    from outbound_sender.errors import ConfigError

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=next(iter(env))):
        load_settings()
