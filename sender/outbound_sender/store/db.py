"""asyncpg connections and pools (the hot path's driver: see docs/performance.md)."""

from __future__ import annotations

import json
from typing import Any

import asyncpg


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def _settings(application: str | None) -> dict[str, str]:
    return {"application_name": application} if application else {}


async def connect(dsn: str, *, application: str | None = None, **kwargs: Any) -> asyncpg.Connection:
    kwargs.setdefault("server_settings", _settings(application))
    conn: asyncpg.Connection = await asyncpg.connect(dsn, **kwargs)
    await _init_connection(conn)
    return conn


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 2, application: str | None = None, **kwargs: Any
) -> asyncpg.Pool:
    """A small pool: the worker needs few connections (claim, complete, housekeeping)."""
    kwargs.setdefault("server_settings", _settings(application))
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init_connection, **kwargs)
    assert pool is not None
    return pool
