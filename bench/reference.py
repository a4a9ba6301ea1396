"""L_ref: the reference lifecycle, the yardstick for our own database cost per message.

A two-table model of a sender (bench/sql/reference.sql) in a database of its own: claim a batch with
FOR UPDATE SKIP LOCKED and commit (SENDING), then commit SENT together with one attempt row per
message (bench/sql/reference_lifecycle.sql), driven by pgbench exactly like L. L / L_ref says how
much of the database's capacity our schema and statements leave to us.
"""

from __future__ import annotations

import asyncpg

from bench.common import BODY, SQL_DIR, Throughput, bench_sql, timed_lifecycle, vacuum


async def prepare(dsn: str, messages: int) -> None:
    """Create the reference tables in the (empty) database `dsn` and queue `messages` due messages."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(bench_sql("reference_schema"))
        await conn.execute(bench_sql("reference_load"), messages, BODY)
    finally:
        await conn.close()
    await vacuum(dsn)


async def run(dsn: str, *, batch: int = 10, clients: int = 8, seconds: float = 10) -> Throughput:
    """Run the lifecycle for `seconds` on a database made by `prepare`; what it completed."""
    script = (SQL_DIR / "reference_lifecycle.sql").read_text()
    return await timed_lifecycle(
        dsn, "L_ref", script, counts="reference_counts", batch=batch, clients=clients, seconds=seconds
    )
