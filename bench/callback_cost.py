"""What delivery callbacks add to the worker's completion statement, side by side.

    python -m bench.callback_cost [--messages N] [--runs R] [--baseline-sql FILE]

Two fresh databases per run on one durable embedded server, each with N queued messages of one
organisation; in one, that organisation has a registered callback URL. Both are drained the same
way (claim_batch of 10, then complete_batch with every result SENT), interleaved run by run, and
only complete_batch is timed. Also measured: the WAL each drain wrote (the database's durable
cost). With --baseline-sql (a worker.sql of an earlier version, e.g. `git show
30ee7fc:sender/outbound_sender/store/sql/worker.sql`), that version's complete_batch is drained
too, without a callback URL: the statement as it was before callbacks existed.
Not part of `make bench`: a quick check of docs/callbacks.md's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bench import common
from outbound_sender.providers.base import SendResult
from outbound_sender.store.db import connect
from outbound_sender.store.gateway import as_arrays, message_from_row
from outbound_sender.store.queries import parse, sql
from outbound_sender.worker import results

BATCH = 10
CHANNELS = ["SMS", "EMAIL", "WHATSAPP"]


@dataclass(frozen=True)
class Drain:
    seconds: float  # inside complete_batch only
    wal_bytes: int
    batches: int
    outbox_rows: int


async def drain(dsn: str, complete: str) -> Drain:
    conn = await connect(dsn)
    try:
        spent, batches = 0.0, 0
        wal_start = await conn.fetchval("SELECT pg_current_wal_insert_lsn()")
        while rows := await conn.fetch(sql("claim_batch"), CHANNELS, BATCH, "bench", 60.0):
            done = [
                results.success(message_from_row(row), "null", SendResult(f"id-{row['id']}", 201), 1) for row in rows
            ]
            started = time.perf_counter()
            await conn.fetch(complete, *as_arrays(done), "bench")
            spent += time.perf_counter() - started
            batches += 1
        wal = await conn.fetchval("SELECT pg_current_wal_insert_lsn() - $1::pg_lsn", wal_start)
        outbox = await conn.fetchval("SELECT count(*) FROM outbound_callback_outbox")
        return Drain(spent, int(wal), batches, int(outbox))
    finally:
        await conn.close()


async def one_run(server: common.Server, messages: int, callback: bool, complete: str) -> Drain:
    async with common.database(server) as dsn:
        await common.load_messages(dsn, messages)
        if callback:
            conn: asyncpg.Connection = await connect(dsn)
            try:
                await conn.execute(
                    "INSERT INTO outbound_callback_endpoint (org_id, url, secret) VALUES ('bench', $1, 'whsec_bench')",
                    "https://hooks.example.com/outbound",
                )
            finally:
                await conn.close()
        await common.vacuum(dsn)
        return await drain(dsn, complete)


async def main(messages: int, runs: int, baseline: str | None) -> None:
    variants = {
        "without a callback URL": (False, sql("complete_batch")),
        "with a callback URL": (True, sql("complete_batch")),
    }
    if baseline is not None:
        variants["before callbacks existed"] = (False, baseline)
    measured: dict[str, list[Drain]] = {name: [] for name in variants}
    with (
        tempfile.TemporaryDirectory(prefix="outbound-callback-cost-") as folder,
        common.postgres(Path(folder)) as server,
    ):
        for _ in range(runs):
            for name, (callback, statement) in variants.items():
                measured[name].append(await one_run(server, messages, callback, statement))
    print(f"complete_batch, batches of {BATCH}, {messages} messages, {runs} runs interleaved (median, min-max):")
    for name, drains in measured.items():
        per_batch = [d.seconds / d.batches * 1000 for d in drains]
        wal = statistics.median(d.wal_bytes / messages for d in drains)
        print(
            f"  {name:<25} {statistics.median(per_batch):.3f} ms per batch "
            f"({min(per_batch):.3f}-{max(per_batch):.3f}), {wal:.0f} WAL bytes per message, "
            f"outbox rows {drains[0].outbox_rows}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--baseline-sql", type=Path, help="an earlier worker.sql: its complete_batch as a third variant"
    )
    args = parser.parse_args()
    baseline = parse(args.baseline_sql.read_text())["complete_batch"] if args.baseline_sql else None
    asyncio.run(main(args.messages, args.runs, baseline))
