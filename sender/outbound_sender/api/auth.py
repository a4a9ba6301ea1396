"""API keys: `obk_<id>_<secret>`, one organisation each, stored as SHA-256 of the secret.

The secret is 256 random bits, so a fast hash resists guessing as well as a slow one would; the id
finds the row by primary key and the digest is compared in constant time. A verified key is trusted
for `cache_seconds` (ApiSettings.key_cache_seconds): revocation takes effect within that time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from outbound_sender.store import api_keys

_TOKEN = re.compile(r"^obk_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


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

    def __init__(self, pool: asyncpg.Pool, cache_seconds: float, clock: Callable[[], float] = time.monotonic):
        self._pool = pool
        self._ttl = cache_seconds
        self._clock = clock
        self._cache: dict[str, _Verified] = {}

    async def org_for(self, token: str) -> str | None:
        key = parse_token(token)
        if key is None:
            return None
        known = self._cache.get(key.key_id)
        if known is None or known.until <= self._clock():
            known = await self._load(key.key_id)
            if known is None:
                return None
        if not hmac.compare_digest(known.secret_hash, hash_secret(key.secret)):
            return None
        return known.org_id

    async def _load(self, key_id: str) -> _Verified | None:
        self._cache.pop(key_id, None)
        row = await api_keys.lookup(self._pool, key_id)
        if row is None:
            return None
        verified = _Verified(row["org_id"], row["secret_hash"], self._clock() + self._ttl)
        if self._ttl > 0:
            self._cache[key_id] = verified
        return verified


async def create_key(conn: api_keys.Executor, org_id: str, name: str = "") -> IssuedKey:
    """Issue a key for `org_id`; the returned token is the only copy of the secret."""
    key = new_key()
    await api_keys.insert(conn, key.key_id, org_id, name, hash_secret(key.secret))
    return key
