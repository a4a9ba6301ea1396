"""Delivery callbacks: the endpoints organisations register (HTTP API) and the outbox the callback
dispatcher drains (store/sql/callbacks.sql)."""

from __future__ import annotations

import asyncpg

from outbound_sender.store.queries import sql

Db = asyncpg.Connection | asyncpg.Pool


# ---- endpoints (api/callbacks.py) --------------------------------------------------------------
async def endpoint_count(db: Db, org_id: str) -> int:
    return int(await db.fetchval(sql("callback_endpoint_count"), org_id))


async def create_endpoint(db: Db, org_id: str, url: str, description: str | None, secret: str) -> asyncpg.Record | None:
    """The new endpoint; None when the organisation already registered that URL."""
    return await db.fetchrow(sql("create_callback_endpoint"), org_id, url, description, secret)


async def list_endpoints(db: Db, org_id: str) -> list[asyncpg.Record]:
    return list(await db.fetch(sql("list_callback_endpoints"), org_id))


async def delete_endpoint(db: Db, org_id: str, endpoint_id: int) -> bool:
    """False when the organisation has no such endpoint."""
    return await db.fetchval(sql("delete_callback_endpoint"), org_id, endpoint_id) is not None


async def rotate_secret(
    db: Db, org_id: str, endpoint_id: int, secret: str, grace_seconds: float
) -> asyncpg.Record | None:
    return await db.fetchrow(sql("rotate_callback_secret"), org_id, endpoint_id, secret, grace_seconds)


# ---- outbox (callbacks/dispatcher.py) ------------------------------------------------------------
async def claim(db: Db, limit: int, lease_seconds: float) -> list[asyncpg.Record]:
    return list(await db.fetch(sql("claim_callbacks"), limit, lease_seconds))


async def outbox_stats(db: Db) -> asyncpg.Record:
    row = await db.fetchrow(sql("callback_outbox_stats"))
    assert row is not None
    return row


async def delivered(db: Db, callback_id: int, http_status: int | None) -> None:
    await db.execute(sql("callback_delivered"), callback_id, http_status)


async def retry(
    db: Db, callback_id: int, http_status: int | None, error: str | None, *, delay_seconds: float, give_up: bool
) -> None:
    await db.execute(sql("callback_retry"), callback_id, http_status, error, delay_seconds, give_up)
