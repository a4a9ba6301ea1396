"""Shared fixtures: real PostgreSQL and Redis servers (see tests/pg.py)."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from outbound_sender.embedded import EmbeddedRedis, free_port, remove_tree
from outbound_sender.store.db import connect
from tests import pg

pytest_plugins = ["tests.logscan"]

# `outbound api` / `outbound run` processes started by tests serve their metrics on this port unless a
# test names its own: one free port per test session, so two sessions on one machine never collide on
# the default 9090.
os.environ.setdefault("OUTBOUND_METRICS_PORT", str(free_port()))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pg.PgServer]:
    servers = pg.start_server()
    server = next(servers)
    asyncio.run(pg.create_template(server))
    yield server
    for _ in servers:
        pass


@pytest.fixture
async def db_dsn(pg_server: pg.PgServer) -> AsyncIterator[str]:
    """A fresh, migrated database for this test."""
    name = await pg.create_test_database(pg_server)
    yield pg_server.dsn(name)
    await pg.drop_database(pg_server, name)


@pytest.fixture
async def db(db_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(db_dsn)
    yield conn
    await conn.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    folder = Path(tempfile.mkdtemp(prefix="outbound-redis-"))
    server = EmbeddedRedis(folder).start()
    yield server
    server.stop()
    remove_tree(folder)
