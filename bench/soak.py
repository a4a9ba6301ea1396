"""S: the queue stays fast as the table grows. A soak of our claim + complete at full speed.

The table holds `total` messages, most of them SENT history with their attempt rows (as a
production table does between archive runs), and `drain` of them QUEUED. pgbench drains the queue
with the worker's own claim_batch + complete_batch (the L script: 8 clients, batch 10) while the
attempt rows written are sampled every 50 ms; the throughput of the first 10 % of the drain (from
its first completed message) and of the last 10 % are compared. Dead tuples and the sizes of the
table and its indexes are read before and after, with autovacuum running as the server is
configured (docs/performance.md recommends settings for this table).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import asyncpg

from bench import pgbench_limit
from bench.common import BODY, bench_sql, database, postgres, vacuum
from outbound_sender.embedded import pg_bin_dir

SAMPLE_SECONDS = 0.05
MAX_SECONDS = 3600.0

# The autovacuum settings docs/performance.md recommends, applied by `--tuned`: vacuum
# outbound_message after a fixed number of dead row versions (each message leaves two) rather than
# a fifth of the table, unthrottled, and the insert-only outbound_attempt every 50,000 rows.
TUNED_SERVER = ("ALTER SYSTEM SET autovacuum_naptime = '10s'", "SELECT pg_reload_conf()")
TUNED_TABLES = (
    "ALTER TABLE outbound_message SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 20000,"
    " autovacuum_vacuum_cost_delay = 0, autovacuum_analyze_scale_factor = 0.02)",
    "ALTER TABLE outbound_attempt SET (autovacuum_vacuum_insert_scale_factor = 0,"
    " autovacuum_vacuum_insert_threshold = 50000, autovacuum_vacuum_cost_delay = 0)",
)


async def prepare(dsn: str, total: int, drain: int) -> None:
    """`total - drain` SENT messages with their attempts, then `drain` QUEUED; vacuumed."""
    if not 0 < drain < total:
        raise ValueError(f"the drain ({drain:,}) must be part of the table ({total:,})")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(bench_sql("soak_history"), total - drain, BODY)
        await conn.execute(bench_sql("soak_queue"), drain, BODY)
    finally:
        await conn.close()
    await vacuum(dsn)


async def _tables(conn: asyncpg.Connection) -> dict[str, asyncpg.Record]:
    await conn.execute("SELECT pg_stat_force_next_flush()")
    return {row["table_name"]: row for row in await conn.fetch(bench_sql("soak_tables"))}


MIN_INTERVALS = 2  # sample intervals a tenth must span for its rate to mean anything


def _rate_between(samples: list[tuple[float, int]], low: int, high: int) -> float:
    """Messages per second between the first samples that counted `low` and `high` messages, from
    the counts those two samples really read (a sample can overshoot its mark by 50 ms of work)."""
    start = next(i for i, (_, done) in enumerate(samples) if done >= low)
    end = next(i for i, (_, done) in enumerate(samples) if done >= high)
    if end - start < MIN_INTERVALS:
        raise ValueError(
            f"the drain from {low:,} to {high:,} messages took {end - start} sample(s) of {SAMPLE_SECONDS} s:"
            " too short to time; drain more messages"
        )
    (t0, done0), (t1, done1) = samples[start], samples[end]
    return (done1 - done0) / (t1 - t0)


async def drain_queue(dsn: str, drain: int, *, clients: int = 8, batch: int = 10) -> list[tuple[float, int]]:
    """Run the L script until `drain` attempt rows were written; (seconds, rows so far) samples."""
    conn = await asyncpg.connect(dsn)
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "soak.sql"
        script.write_text(pgbench_limit.script())
        command = [str(pg_bin_dir() / "pgbench"), "-n", "-M", "prepared", "-c", str(clients), "-j", "2"]
        command += ["-T", str(int(MAX_SECONDS)), "-f", str(script), f"--define=batch={batch}", dsn]
        try:
            first = int(await conn.fetchval(bench_sql("soak_attempts_so_far")))
            process = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
            )
            start = time.perf_counter()
            samples = [(0.0, 0)]
            try:
                while samples[-1][1] < drain:
                    if process.returncode is not None:
                        error = await process.stderr.read() if process.stderr else b""
                        raise RuntimeError(f"pgbench ended before the drain: {error.decode()[-2000:]}")
                    await asyncio.sleep(SAMPLE_SECONDS)
                    done = int(await conn.fetchval(bench_sql("soak_attempts_so_far"))) - first
                    samples.append((time.perf_counter() - start, done))
            finally:
                if process.returncode is None:
                    process.terminate()
                await process.communicate()
        finally:
            await conn.close()
    return samples


async def run(dsn: str, drain: int) -> dict[str, float]:
    """Drain the prepared queue; throughput of its first and last tenth, tables before and after."""
    conn = await asyncpg.connect(dsn)
    try:
        before = await _tables(conn)
        samples = await drain_queue(dsn, drain)
        await asyncio.sleep(1)  # pgbench's backends report their counts as they end
        after = await _tables(conn)
        left = await conn.fetchval("SELECT count(*) FROM outbound_message WHERE status <> 'SENT'")
    finally:
        await conn.close()
    if left:
        raise RuntimeError(f"the drain left {left} messages not SENT")
    tenth = drain // 10
    # The first tenth is timed from the first completed message, not from pgbench's start (connecting
    # and preparing the statements is not the table's speed).
    first, last = _rate_between(samples, 1, tenth), _rate_between(samples, drain - tenth, drain)
    message, attempt = "outbound_message", "outbound_attempt"
    return {
        "first_msgs_per_s": first,
        "last_msgs_per_s": last,
        "last_over_first": last / first,
        "seconds": samples[-1][0],
        "dead_before": before[message]["dead"],
        "dead_after": after[message]["dead"],
        "vacuums_during": after[message]["vacuums"] - before[message]["vacuums"],
        "table_mb_before": before[message]["table_bytes"] / 2**20,
        "table_mb_after": after[message]["table_bytes"] / 2**20,
        "index_mb_before": before[message]["index_bytes"] / 2**20,
        "index_mb_after": after[message]["index_bytes"] / 2**20,
        "attempt_mb_before": (before[attempt]["table_bytes"] + before[attempt]["index_bytes"]) / 2**20,
        "attempt_mb_after": (after[attempt]["table_bytes"] + after[attempt]["index_bytes"]) / 2**20,
    }


async def _soak(total: int, drain: int, tuned: bool) -> dict[str, float]:
    with postgres(Path(tempfile.mkdtemp(prefix="outbound-soak-"))) as server:
        if tuned:
            admin = await asyncpg.connect(server.admin_dsn)
            try:
                for statement in TUNED_SERVER:
                    await admin.execute(statement)
            finally:
                await admin.close()
        async with database(server) as dsn:
            await prepare(dsn, total, drain)
            if tuned:
                conn = await asyncpg.connect(dsn)
                try:
                    for statement in TUNED_TABLES:
                        await conn.execute(statement)
                finally:
                    await conn.close()
            return await run(dsn, drain)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--total", type=int, default=1_000_000, help="messages in the table (default 1,000,000)")
    parser.add_argument("--drain", type=int, default=200_000, help="of which QUEUED and drained (default 200,000)")
    parser.add_argument("--tuned", action="store_true", help="with the recommended autovacuum settings")
    args = parser.parse_args(argv)
    if not 0 < args.drain < args.total:
        parser.error("--drain must be above 0 and below --total")
    for name, value in asyncio.run(_soak(args.total, args.drain, args.tuned)).items():
        print(f"{name:20} {value:12,.2f}")


if __name__ == "__main__":
    main()
