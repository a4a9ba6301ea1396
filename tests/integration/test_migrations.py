"""Migrations: from empty to the declared schema (store/schema.sql), idempotent, tamper-evident."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from outbound_sender.domain import ProviderControl
from outbound_sender.store import migrations
from outbound_sender.store.db import connect
from outbound_sender.store.queries import sql
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


@pytest.mark.parametrize(
    ("table", "archive_table"),
    [("outbound_message", "outbound_message_archive"), ("outbound_attempt", "outbound_attempt_archive")],
)
async def test_archive_has_the_columns_in_order(db: asyncpg.Connection, table: str, archive_table: str) -> None:
    """INSERT INTO outbound_message_archive SELECT * FROM outbound_message (the runbook) and the
    attempt archive trigger's INSERT ... SELECT OLD.*, now() need this: a migration that adds a
    column to a table adds it to its archive too."""
    query = """SELECT column_name, data_type FROM information_schema.columns
               WHERE table_name = $1 ORDER BY ordinal_position"""
    message = [tuple(r) for r in await db.fetch(query, table)]
    archive = [tuple(r) for r in await db.fetch(query, archive_table)]
    assert archive[: len(message)] == message
    assert [c for c, _ in archive[len(message) :]] == ["archived_at"]


async def test_a_role_that_may_not_create_pg_stat_statements_still_migrates(pg_server: pg.PgServer) -> None:
    """Production's application role is rarely a superuser: the migration goes on without the
    extension (an administrator creates it), instead of failing the rollout."""
    suffix = uuid.uuid4().hex[:8]
    role, database = f"app_{suffix}", f"app_db_{suffix}"
    admin = await asyncpg.connect(pg_server.admin_dsn)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'app' NOSUPERUSER")
        await admin.execute(f"CREATE DATABASE {database} OWNER {role}")
        parts = urlsplit(pg_server.dsn(database))
        dsn = urlunsplit(parts._replace(netloc=f"{role}:app@{parts.hostname}:{parts.port}"))
        conn = await connect(dsn)
        try:
            applied = await migrations.migrate(conn)
            assert [m.version for m in applied] == [m.version for m in migrations.discover()]
            assert await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'") == 0
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()


async def test_a_database_that_applied_an_earlier_comment_only_text_is_current(db: asyncpg.Connection) -> None:
    """0001's comment changed after release; a database that recorded the earlier text's checksum
    must neither refuse to start nor apply anything again."""
    [earlier] = migrations.EARLIER_TEXTS[1]
    await db.execute("UPDATE schema_migrations SET checksum = $1 WHERE version = 1", earlier)
    assert await migrations.migrate(db) == []
    assert await migrations.is_current(db)


# The control statements of the release before migration 0013, as its workers and operator send
# them: they must keep working on the migrated schema while a rolling upgrade replaces their pods.
BEFORE_0013_WORKER_CONTROL = """
SELECT provider, channel, kind, enabled, priority, circuit_mode, circuit_state, circuit_since,
       half_open_probes_per_minute, batch_size, messages_per_second
  FROM provider_control ORDER BY channel, priority, provider"""
BEFORE_0013_OPERATOR_UPSERT = """
INSERT INTO provider_control AS c
       (provider, channel, kind, enabled, priority, circuit_mode, circuit_state, circuit_since, circuit_reason,
        half_open_probes_per_minute, batch_size, messages_per_second, observed_generation, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, now())
ON CONFLICT (provider) DO UPDATE SET batch_size = EXCLUDED.batch_size,
       messages_per_second = EXCLUDED.messages_per_second, updated_at = now()"""


async def test_the_release_before_the_unused_send_rate_keeps_running_on_the_migrated_schema(
    db: asyncpg.Connection,
) -> None:
    """Migration 0013 stops using provider_control.messages_per_second but keeps the column: the
    previous release's workers and operator, still running during the upgrade, select and write it."""
    since = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    row = ("sms-old", "SMS", "twilio", True, 10, "Auto", "CLOSED", since, None, 6, 20, None, 1)
    await db.execute(BEFORE_0013_OPERATOR_UPSERT, *row)
    [read] = await db.fetch(BEFORE_0013_WORKER_CONTROL)
    assert (read["provider"], read["batch_size"], read["messages_per_second"]) == ("sms-old", 20, None)
    # This release reads the row without the column and takes the rest as it is.
    [current] = await db.fetch(sql("control_rows"))
    assert "messages_per_second" not in set(current.keys())
    assert ProviderControl.from_row(dict(current)).batch_size == 20
    comment = await db.fetchval(
        "SELECT col_description(attrelid, attnum) FROM pg_attribute"
        " WHERE attrelid = 'provider_control'::regclass AND attname = 'messages_per_second'"
    )
    assert str(comment).startswith("Unused since migration 0013"), comment
