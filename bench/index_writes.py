"""Index entries the hot path writes per message, read from the WAL (pg_walinspect).

    python -m bench.index_writes

Queues messages, claims them with the worker's claim_batch and records them SENT with its
complete_batch, then counts the index records that lifecycle left in the WAL, per index and per
message. Unlike a throughput figure this does not depend on the machine: it is the schema's cost
in index maintenance (each entry is a B-tree descent, a page change and a WAL record). "plain"
messages are the bench's (no dossier, correlation, template or idempotency key); "full" ones carry
all four, as API clients usually send them, so the partial indexes on those columns match too.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from bench.common import BODY, database, postgres
from outbound_sender.domain import Channel, NewMessage
from outbound_sender.store.db import connect
from outbound_sender.store.messages import enqueue_many
from outbound_sender.store.queries import sql

CHANNELS = ["SMS", "EMAIL", "WHATSAPP"]

INDEX_RECORDS = """
SELECT c.relname AS index, count(DISTINCT b.start_lsn) AS records
  FROM pg_get_wal_block_info($1::pg_lsn, $2::pg_lsn) b
  JOIN pg_class c ON c.relfilenode = b.relfilenode AND c.relkind = 'i'
 WHERE b.reldatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND b.relforknumber = 0
 GROUP BY c.relname
"""


def _message(n: int, *, full: bool) -> NewMessage:
    if not full:
        return NewMessage(org_id="bench", channel=Channel.SMS, to_recipient=f"+1555{n:07d}", body=BODY)
    return NewMessage(
        org_id="bench",
        channel=Channel.SMS,
        to_recipient=f"+1555{n:07d}",
        body=BODY,
        dossier_id=f"D{n}",
        correlation_id=f"c{n}",
        template_code="otp",
    )


def _complete_args(rows: list[Any]) -> list[Any]:
    n = len(rows)
    return [
        [r["id"] for r in rows],
        [r["lease_id"] for r in rows],
        [r["claim_count"] for r in rows],
        ["SENT"] * n,
        [None] * n,
        [None] * n,
        ["sandbox"] * n,
        [None] * n,
        [None] * n,
        [f"pm{r['id']}" for r in rows],
        [201] * n,
        [1] * n,
        [None] * n,
        [False] * n,
        [r["channel"] for r in rows],
        "index-writes",
    ]


async def entries_per_message(dsn: str, *, messages: int = 20, full: bool = False) -> dict[str, float]:
    """Index records per message of one claim + completion of `messages` fresh messages, by index."""
    conn = await connect(dsn)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        # WAL can be read up to where it was flushed: each commit here flushes its own records.
        await conn.execute("SET synchronous_commit = on")
        await enqueue_many(conn, [_message(n, full=full) for n in range(messages)])
        if full:  # the batch insert takes no idempotency keys (only the API's inserts do)
            await conn.execute("UPDATE outbound_message SET idempotency_key = 'k' || id")
        start = await conn.fetchval("SELECT pg_current_wal_insert_lsn()")
        rows = await conn.fetch(sql("claim_batch"), CHANNELS, messages, "index-writes", 30.0)
        if len(rows) != messages:
            raise RuntimeError(f"claimed {len(rows)} of {messages} messages: the database was not empty")
        await conn.fetch(sql("complete_batch"), *_complete_args(rows))
        end = await conn.fetchval("SELECT pg_current_wal_flush_lsn()")
        counts = await conn.fetch(INDEX_RECORDS, start, end)
    finally:
        await conn.close()
    return {row["index"]: row["records"] / messages for row in counts}


async def main() -> None:
    with postgres(Path(tempfile.mkdtemp(prefix="outbound-index-writes-"))) as server:
        for full in (False, True):
            async with database(server) as dsn:
                found = await entries_per_message(dsn, full=full)
            print(f"{'full' if full else 'plain'} messages: {sum(found.values()):.1f} index records per message")
            for name, per_message in sorted(found.items()):
                print(f"  {name:50} {per_message:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
