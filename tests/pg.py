"""Test databases: one PostgreSQL server per test session, one database per test.

The server is DATABASE_URL's when set (it needs CREATEDB), else an embedded PostgreSQL 18 in a
temporary folder. A template database is migrated once; each test gets `CREATE DATABASE … TEMPLATE`.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from outbound_sender.embedded import EmbeddedPostgres, remove_tree
from outbound_sender.store.db import connect
from outbound_sender.store.migrations import migrate

TEMPLATE = "outbound_test_template"


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


@dataclass
class PgServer:
    admin_dsn: str
    embedded: EmbeddedPostgres | None = None

    def dsn(self, database: str) -> str:
        return with_database(self.admin_dsn, database)


def start_server() -> Iterator[PgServer]:
    url = os.environ.get("DATABASE_URL")
    if url:
        yield PgServer(url)
        return
    folder = Path(tempfile.mkdtemp(prefix="outbound-pg-"))
    server = EmbeddedPostgres(folder / "data", fast_unsafe=True).start()
    try:
        yield PgServer(server.dsn(), server)
    finally:
        server.stop()
        remove_tree(folder)


async def _admin(server: PgServer, statement: str) -> None:
    conn = await asyncpg.connect(server.admin_dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def create_template(server: PgServer) -> None:
    """Migrated exactly as production is (the migrations create pg_stat_statements themselves)."""
    await _admin(server, f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
    await _admin(server, f"CREATE DATABASE {TEMPLATE}")
    conn = await connect(server.dsn(TEMPLATE))
    try:
        await migrate(conn)
    finally:
        await conn.close()


async def create_test_database(server: PgServer) -> str:
    name = f"t_{uuid.uuid4().hex[:16]}"
    await _admin(server, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    return name


async def drop_database(server: PgServer, name: str) -> None:
    await _admin(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
