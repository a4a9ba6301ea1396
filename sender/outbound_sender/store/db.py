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


# SQLSTATE classes that say "the server or the connection is unwell, try again": connection
# exceptions (08), insufficient resources (53), operator intervention (57: admin shutdown 57P01,
# crash shutdown 57P02, "the database system is starting up" 57P03), system errors (58) and
# transaction rollbacks (40: serialization failure, deadlock).
TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57", "58"})


def is_transient(error: BaseException) -> bool:
    """True when `error` is a database outage or restart (retry later), False for a bug (an
    undefined table, a constraint violation): retrying those would only hide them."""
    if isinstance(error, OSError | TimeoutError | asyncpg.InterfaceError | asyncpg.InternalClientError):
        return True  # refused, reset, pool closing, connection lost, protocol in an unexpected state
    if isinstance(error, asyncpg.PostgresError):
        return str(getattr(error, "sqlstate", "") or "")[:2] in TRANSIENT_SQLSTATE_CLASSES
    return False
