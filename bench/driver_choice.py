"""asyncpg vs psycopg 3 on the worker's hot path: claim 10 + complete 10, one connection each.

Run with `python -m bench.driver_choice`; the result is recorded in docs/performance.md. psycopg is a
benchmark-only dependency: the sender uses asyncpg alone.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from pathlib import Path
from typing import Any

import asyncpg
import psycopg

from bench.common import Stopwatch, database, load_messages, postgres, vacuum
from outbound_sender.store.queries import sql

ROUNDS = 400
CHANNELS = ["SMS", "EMAIL", "WHATSAPP"]


def _complete_args(rows: list[Any]) -> list[Any]:
    n = len(rows)
    ids, leases, nos = [r[0] for r in rows], [r[4] for r in rows], [r[5] for r in rows]
    return [ids, leases, nos, ["SENT"] * n, [None] * n, [None] * n, ["p"] * n, [None] * n, [None] * n]


def _complete_rest(rows: list[Any]) -> list[Any]:
    n = len(rows)
    return [["pm"] * n, [201] * n, [1] * n, [None] * n, [False] * n, [r[2] for r in rows], "bench"]


async def with_asyncpg(dsn: str) -> float:
    conn = await asyncpg.connect(dsn)
    claim, complete = sql("claim_batch"), sql("complete_batch")
    with Stopwatch() as watch:
        for _ in range(ROUNDS):
            rows = await conn.fetch(claim, CHANNELS, 10, "bench", 30.0)
            await conn.fetch(complete, *_complete_args(rows), *_complete_rest(rows))
    await conn.close()
    return ROUNDS * 10 / watch.seconds


def _psycopg_sql(text: str) -> str:
    """$n placeholders (in order in these statements) to psycopg's %s, comments dropped."""
    code = "\n".join(line.split("--")[0] for line in text.splitlines())
    return re.sub(r"\$(\d+)", "%s", code)


async def with_psycopg(dsn: str) -> float:
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, prepare_threshold=0)
    claim, complete = _psycopg_sql(sql("claim_batch")), _psycopg_sql(sql("complete_batch"))
    with Stopwatch() as watch:
        for _ in range(ROUNDS):
            cursor = await conn.execute(claim, (CHANNELS, 10, "bench", 30.0))
            rows = await cursor.fetchall()
            await (await conn.execute(complete, (*_complete_args(rows), *_complete_rest(rows)))).fetchall()
    await conn.close()
    return ROUNDS * 10 / watch.seconds


async def main() -> None:
    with postgres(Path(tempfile.mkdtemp(prefix="outbound-driver-"))) as server:
        for name, fn in (("asyncpg", with_asyncpg), ("psycopg", with_psycopg)) * 2:
            async with database(server) as dsn:
                await load_messages(dsn, ROUNDS * 10)
                await vacuum(dsn)
                print(f"{name:8} {await fn(dsn):8,.0f} msg/s (claim+complete, batch 10, one connection)")


if __name__ == "__main__":
    asyncio.run(main())
