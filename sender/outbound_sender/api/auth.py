"""API keys: `obk_<id>_<secret>`, one organisation each, stored as SHA-256 of the secret.

The secret is 256 random bits, so a fast hash resists guessing as well as a slow one would; the id
finds the row by primary key and the digest is compared in constant time. A verified key is trusted
for `cache_seconds` (ApiSettings.key_cache_seconds): revocation takes effect within that time. A key
id the database does not know (or knows as revoked) is remembered as unknown for `negative_seconds`
(ApiSettings.negative_cache_seconds), so repeated guesses do not each cost a query.

FailureThrottle counts failed authentications per client address: past `max_failures` in a window
the address gets 429 without a database lookup until the window ends, except for key ids that
verified within the last hour (GOOD_KEY_MEMORY_SECONDS): clients behind the same proxy as a guesser
keep working with their keys, which are still checked (and revocation applies) as usual.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import asyncpg

from outbound_sender.store import api_keys

_TOKEN = re.compile(r"^obk_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key_id: str
    secret: str

    @property
    def token(self) -> str:
        """What the client sends: Authorization: Bearer <token>. Shown once, never stored."""
        return f"obk_{self.key_id}_{self.secret}"


def new_key() -> IssuedKey:
    key_id = "".join(secrets.choice(_ALPHABET) for _ in range(12))
    return IssuedKey(key_id, secrets.token_urlsafe(32))


def parse_token(token: str) -> IssuedKey | None:
    match = _TOKEN.match(token)
    return IssuedKey(match[1], match[2]) if match else None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class _Verified:
    org_id: str
    secret_hash: str
    until: float


class Authenticator:
    """Maps a bearer token to its organisation, or None (unknown, malformed or revoked)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        cache_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        negative_seconds: float = 0.0,
    ):
        self._pool = pool
        self._ttl = cache_seconds
        self._negative_ttl = negative_seconds
        self._clock = clock
        self._cache: dict[str, _Verified] = {}
        self._unknown: dict[str, float] = {}  # key id -> until
        self._good: dict[str, float] = {}  # key id -> until: verified lately (see recently_good)

    async def org_for(self, token: str) -> str | None:
        key = parse_token(token)
        if key is None:
            return None
        known = self._cached(key.key_id)
        if known is None:
            if self._unknown_until(key.key_id) > self._clock():
                return None
            known = await self._load(key.key_id)
            if known is None:
                return None
        org_id = _verify(known, key)
        if org_id is not None:
            now = self._clock()
            _bounded_put(self._good, key.key_id, now + GOOD_KEY_MEMORY_SECONDS, now, lambda until: until)
        return org_id

    def recently_good(self, token: str) -> bool:
        """Whether this token's key id verified within GOOD_KEY_MEMORY_SECONDS: a client whose address
        is throttled (others behind the same proxy guessing) keeps working with the key it used."""
        key = parse_token(token)
        return key is not None and self._good.get(key.key_id, 0.0) > self._clock()

    def _cached(self, key_id: str) -> _Verified | None:
        known = self._cache.get(key_id)
        return known if known is not None and known.until > self._clock() else None

    def _unknown_until(self, key_id: str) -> float:
        return self._unknown.get(key_id, 0.0)

    async def _load(self, key_id: str) -> _Verified | None:
        self._cache.pop(key_id, None)
        row = await api_keys.lookup(self._pool, key_id)
        now = self._clock()
        if row is None:
            if self._negative_ttl > 0:
                _bounded_put(self._unknown, key_id, now + self._negative_ttl, now, lambda until: until)
            return None
        self._unknown.pop(key_id, None)
        verified = _Verified(row["org_id"], row["secret_hash"], now + self._ttl)
        if self._ttl > 0:
            _bounded_put(self._cache, key_id, verified, now, lambda v: v.until)
        return verified


def _verify(known: _Verified, key: IssuedKey) -> str | None:
    return known.org_id if hmac.compare_digest(known.secret_hash, hash_secret(key.secret)) else None


CACHE_ENTRIES_MAX = 100_000
GOOD_KEY_MEMORY_SECONDS = 3600.0


def _bounded_put(table: dict[str, V], key: str, value: V, now: float, until: Callable[[V], float]) -> None:
    """Insert, keeping at most CACHE_ENTRIES_MAX entries: expired ones go first, then the oldest."""
    if key not in table and len(table) >= CACHE_ENTRIES_MAX:
        for stale in [k for k, v in table.items() if until(v) <= now]:
            del table[stale]
        while len(table) >= CACHE_ENTRIES_MAX:
            del table[next(iter(table))]
    table[key] = value


@dataclass(slots=True)
class _Window:
    started: float
    failures: int


class FailureThrottle:
    """Failed authentications per client address in fixed windows of `window_seconds`; after
    `max_failures` in one window the address is refused until it ends (max_failures 0: off)."""

    def __init__(self, max_failures: int, window_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.max_failures = max_failures
        self.window = window_seconds
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    def retry_after(self, address: str) -> float | None:
        """Seconds until `address` may try again, or None when it may now."""
        if self.max_failures <= 0:
            return None
        window = self._windows.get(address)
        if window is None or window.failures < self.max_failures:
            return None
        left = window.started + self.window - self._clock()
        return left if left > 0 else None

    def failed(self, address: str) -> None:
        if self.max_failures <= 0:
            return
        now = self._clock()
        window = self._windows.get(address)
        if window is None or window.started + self.window <= now:
            _bounded_put(self._windows, address, _Window(now, 1), now, lambda w: w.started + self.window)
        else:
            window.failures += 1


async def create_key(conn: api_keys.Executor, org_id: str, name: str = "") -> IssuedKey:
    """Issue a key for `org_id`; the returned token is the only copy of the secret."""
    key = new_key()
    await api_keys.insert(conn, key.key_id, org_id, name, hash_secret(key.secret))
    return key
