"""The declared schema: store/schema.sql is what migrating from empty must produce.

`make schema` rewrites schema.sql from a database just migrated from empty;
tests/integration/test_migrations.py fails when they differ.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from outbound_sender.embedded import pg_bin_dir

SCHEMA_FILE = Path(__file__).parent / "schema.sql"
_NOISE = re.compile(r"^(--|SET |SELECT pg_catalog\.set_config|\\restrict|\\unrestrict)")


def dump_schema(dsn: str) -> str:
    """Schema-only dump, without comments, settings or session noise, for comparison."""
    command = [str(pg_bin_dir() / "pg_dump"), "--schema-only", "--no-owner", "--no-privileges"]
    command += ["--exclude-table=schema_migrations", dsn]
    dump = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    lines = [line for line in dump.splitlines() if not _NOISE.match(line)]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
