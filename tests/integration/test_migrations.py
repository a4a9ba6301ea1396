"""Migrations: from empty to the declared schema (store/schema.sql), idempotent, tamper-evident."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from outbound_sender.store import migrations
from outbound_sender.store.db import connect
from outbound_sender.store.schema import SCHEMA_FILE, dump_schema
from tests import pg


@pytest.fixture
async def empty_dsn(pg_server: pg.PgServer) -> object:
    name = f"empty_{id(pg_server)}"
    conn = await asyncpg.connect(pg_server.admin_dsn)
    await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await conn.execute(f"CREATE DATABASE {name}")
    await conn.close()
    yield pg_server.dsn(name)
    await pg.drop_database(pg_server, name)


async def test_migrating_from_empty_gives_the_declared_schema(empty_dsn: str) -> None:
    conn = await connect(empty_dsn)
    try:
        applied = await migrations.migrate(conn)
    finally:
        await conn.close()
    assert [m.version for m in applied] == [m.version for m in migrations.discover()]
    assert dump_schema(empty_dsn) == SCHEMA_FILE.read_text(), "schema.sql is stale: run `make schema`"


async def test_migrate_twice_applies_nothing_the_second_time(db: asyncpg.Connection) -> None:
    assert await migrations.migrate(db) == []
    assert await migrations.is_current(db)


async def test_an_edited_applied_migration_stops_the_run(db: asyncpg.Connection) -> None:
    await db.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
    with pytest.raises(migrations.MigrationError, match="edited after it was applied"):
        await migrations.migrate(db)
    assert not await migrations.is_current(db)


def test_file_names_and_numbering_are_checked(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1")
    (tmp_path / "0003_c.sql").write_text("SELECT 1")
    with pytest.raises(migrations.MigrationError, match="without gaps"):
        migrations.discover(tmp_path)
    (tmp_path / "2_bad.sql").write_text("SELECT 1")
    with pytest.raises(migrations.MigrationError, match="NNNN_name"):
        migrations.discover(tmp_path)


async def test_archive_has_the_message_columns_in_order(db: asyncpg.Connection) -> None:
    """INSERT INTO outbound_message_archive SELECT * FROM outbound_message needs this."""
    query = """SELECT column_name, data_type FROM information_schema.columns
               WHERE table_name = $1 ORDER BY ordinal_position"""
    message = [tuple(r) for r in await db.fetch(query, "outbound_message")]
    archive = [tuple(r) for r in await db.fetch(query, "outbound_message_archive")]
    assert archive[: len(message)] == message
    assert [c for c, _ in archive[len(message) :]] == ["archived_at"]
