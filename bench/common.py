"""Shared pieces of the benchmarks: one PostgreSQL server, a fresh database per measurement."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from outbound_sender.domain import Channel, NewMessage
from outbound_sender.embedded import EmbeddedPostgres, remove_tree
from outbound_sender.store.db import connect
from outbound_sender.store.messages import enqueue_many
from outbound_sender.store.migrations import migrate
from tests.pg import with_database


@dataclass
class Server:
    admin_dsn: str

    def dsn(self, database: str) -> str:
        return with_database(self.admin_dsn, database)


@contextmanager
def postgres(folder: Path) -> Iterator[Server]:
    """One durable embedded server for every measurement (fsync on: the figures are honest)."""
    server = EmbeddedPostgres(folder / "pg").start()
    try:
        yield Server(server.dsn())
    finally:
        server.stop()
        remove_tree(folder)


@asynccontextmanager
async def database(server: Server, *, migrated: bool = True) -> AsyncIterator[str]:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server.admin_dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        dsn = server.dsn(name)
        if migrated:
            conn = await connect(dsn)
            await migrate(conn)
            await conn.close()
        yield dsn
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def vacuum(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def load_messages(dsn: str, count: int, channel: Channel = Channel.SMS) -> None:
    conn = await connect(dsn)
    try:
        chunk = 5000
        for start in range(0, count, chunk):
            size = min(chunk, count - start)
            batch = [
                NewMessage(org_id="bench", channel=channel, to_recipient=f"+1555{(start + n):07d}", body="bench")
                for n in range(size)
            ]
            await enqueue_many(conn, batch)
    finally:
        await conn.close()


async def count_status(dsn: str, status: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM outbound_message WHERE status = $1", status))
    finally:
        await conn.close()


@dataclass
class Latencies:
    samples: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.samples)
        if not ordered:
            return {"p50_ms": float("nan"), "p95_ms": float("nan"), "max_ms": float("nan")}
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        return {
            "p50_ms": statistics.median(ordered) * 1000,
            "p95_ms": p95 * 1000,
            "max_ms": ordered[-1] * 1000,
        }


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
