"""Numbered SQL migrations (migrations/NNNN_name.sql), applied in order in one transaction
(all or nothing).

Applied versions are recorded in `schema_migrations` with the file's checksum; an applied file that
was edited afterwards stops the run (fix forward with a new file instead). Concurrent migrators
(several pods starting at once) serialize on an advisory lock.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 7_402_117_001  # advisory lock id for "outbound-messaging migrations"

_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


class MigrationError(Exception):
    pass


# Checksums of earlier texts of a migration whose later edits touched only comments: a database that
# applied the earlier text is up to date. Never list a text whose statements differ.
EARLIER_TEXTS: dict[int, frozenset[str]] = {
    1: frozenset({"43e7df0ad35c279c44ac4ac5d0a7649fd660cdd755a2882ce6120e91473a4025"}),
}


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if not match:
            raise MigrationError(f"migration file name must be NNNN_name.sql: {path.name}")
        found.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration versions must be 1..N without gaps, found {versions}")
    return found


async def applied_versions(conn: asyncpg.Connection) -> dict[int, str]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
    return {row["version"]: row["checksum"] for row in rows}


def _check_edited(known: list[Migration], applied: dict[int, str]) -> None:
    for migration in known:
        checksum = applied.get(migration.version)
        accepted = {migration.checksum, *EARLIER_TEXTS.get(migration.version, ())}
        if checksum is not None and checksum not in accepted:
            raise MigrationError(f"migration {migration.version:04d}_{migration.name} was edited after it was applied")
    unknown = set(applied) - {m.version for m in known}
    if unknown:
        raise MigrationError(f"database has migrations this code does not know: {sorted(unknown)}")


async def pending(conn: asyncpg.Connection) -> list[Migration]:
    known = discover()
    applied = await applied_versions(conn)
    _check_edited(known, applied)
    return [m for m in known if m.version not in applied]


async def migrate(conn: asyncpg.Connection) -> list[Migration]:
    """Apply every pending migration; returns those applied by this call."""
    done = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(_BOOKKEEPING)
        for migration in await pending(conn):
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
            done.append(migration)
    return done


async def is_current(conn: asyncpg.Connection) -> bool:
    """True when every known migration is applied (readiness)."""
    try:
        return not await pending(conn)
    except MigrationError:
        return False
