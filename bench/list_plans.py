"""EXPLAIN ANALYZE of the API's list queries, on the schema as migrated and as it was before 0012.

    python -m bench.list_plans [--rows N]

The list statement is the API's own (api_list_messages), planned per call with its values as the
API's pool does (plan_cache_mode = force_custom_plan), on N messages (default 300,000) spread over
40 organisations, mostly SENT. Each case prints the plan's nodes, the buffers it touched and its
execution time, first on the schema before migration 0012 then on the current one.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import bench_sql, database, postgres
from bench.schema_cost import VARIANTS
from outbound_sender.store.queries import sql

FILTERS = ("status", "channel", "dossier_id", "template_code", "correlation_id", "created_after", "created_before")
CASES: dict[str, dict[str, Any]] = {
    "no filter": {},
    "status QUEUED": {"status": "QUEUED"},
    "status FAILED": {"status": "FAILED"},
    "status SENT": {"status": "SENT"},
    "status SENDING": {"status": "SENDING"},
    "status FAILED, next page": {"status": "FAILED", "cursor": (dt.datetime(2026, 4, 1, tzinfo=dt.UTC), 10**9)},
    "dossier": {"dossier_id": "D1240"},
}


def _args(filters: dict[str, Any]) -> list[Any]:
    cursor = filters.get("cursor", (None, None))
    return ["org0", *(filters.get(name) for name in FILTERS), *cursor, 51]


def _compact(lines: list[str]) -> str:
    """The plan's node lines and its execution time (no planning figures)."""
    kept = [line for line in lines if not line.startswith(("Planning", "  Planning"))]
    return "\n".join(kept)


async def plans(dsn: str, rows: int, before: bool) -> dict[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(bench_sql("list_plans_fill"), rows)
        if before:
            for statement in VARIANTS["before 0012"]:
                await conn.execute(statement)
        await conn.execute("VACUUM ANALYZE outbound_message")
        await conn.execute("SET plan_cache_mode = force_custom_plan")
        explain = "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) " + sql("api_list_messages")
        found = {}
        for case, filters in CASES.items():
            await conn.fetch(explain, *_args(filters))  # warm the cache: compare plans, not disk reads
            found[case] = _compact([row[0] for row in await conn.fetch(explain, *_args(filters))])
        return found
    finally:
        await conn.close()


async def run(rows: int) -> None:
    with postgres(Path(tempfile.mkdtemp(prefix="outbound-list-plans-"))) as server:
        results = {}
        for before in (True, False):
            async with database(server) as dsn:
                results[before] = await plans(dsn, rows, before)
    for case in CASES:
        print(f"### {case}\nbefore 0012:\n{results[True][case]}\nafter 0012:\n{results[False][case]}\n")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.list_plans", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=300_000, help="messages in the table (default 300,000)")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    asyncio.run(run(args.rows))


if __name__ == "__main__":
    main()
