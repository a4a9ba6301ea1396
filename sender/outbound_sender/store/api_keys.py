"""API keys of the HTTP API (table api_key): create, look up, revoke, list. Only hashes are stored."""

from __future__ import annotations

import asyncpg

from outbound_sender.store.queries import sql

Executor = asyncpg.Connection | asyncpg.Pool


async def insert(conn: Executor, key_id: str, org_id: str, name: str, secret_hash: str) -> asyncpg.Record:
    row = await conn.fetchrow(sql("api_key_insert"), key_id, org_id, name, secret_hash)
    assert row is not None
    return row


async def lookup(conn: Executor, key_id: str) -> asyncpg.Record | None:
    """A live (not revoked) key by id."""
    return await conn.fetchrow(sql("api_key_lookup"), key_id)


async def revoke(conn: Executor, key_id: str) -> asyncpg.Record | None:
    """Revoke a live key; None when there is no such live key."""
    return await conn.fetchrow(sql("api_key_revoke"), key_id)


async def list_keys(conn: Executor, org_id: str | None = None) -> list[asyncpg.Record]:
    return list(await conn.fetch(sql("api_key_list"), org_id))
