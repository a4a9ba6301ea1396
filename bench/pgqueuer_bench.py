"""P: PGQueuer (the reference Python PostgreSQL queue) on the same server, same batch size."""

from __future__ import annotations

import asyncio
import time

import asyncpg
from pgqueuer.db import AsyncpgDriver
from pgqueuer.qm import QueueManager
from pgqueuer.queries import Queries
from pgqueuer.types import QueueExecutionMode

from bench.common import Latencies, Stopwatch, vacuum


async def _install(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await Queries(AsyncpgDriver(conn)).install()
    finally:
        await conn.close()


async def _enqueue(dsn: str, count: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(conn))
        for start in range(0, count, 5000):
            size = min(5000, count - start)
            await queries.enqueue(["noop"] * size, [None] * size, [0] * size)
    finally:
        await conn.close()


async def drain(dsn: str, count: int, batch: int = 10) -> float:
    """Jobs per second to drain `count` no-op jobs with one QueueManager."""
    await _install(dsn)
    await _enqueue(dsn, count)
    await vacuum(dsn)
    conn = await asyncpg.connect(dsn)
    manager = QueueManager(Queries(AsyncpgDriver(conn)))

    @manager.entrypoint("noop")
    async def noop(_job: object) -> None:
        return None

    with Stopwatch() as watch:
        await manager.run(batch_size=batch, mode=QueueExecutionMode.drain)
    await conn.close()
    return count / watch.seconds


async def latency(dsn: str, rate: float, seconds: float) -> dict[str, float]:
    """Enqueue -> entrypoint latency at `rate` jobs/s (LISTEN/NOTIFY wakes the manager)."""
    await _install(dsn)
    sent: dict[bytes, float] = {}
    observed = Latencies()
    conn = await asyncpg.connect(dsn)
    manager = QueueManager(Queries(AsyncpgDriver(conn)))

    @manager.entrypoint("timed")
    async def timed(job: object) -> None:
        payload = job.payload  # type: ignore[attr-defined]
        observed.add(time.perf_counter() - sent[payload])

    runner = asyncio.create_task(manager.run(batch_size=10))
    await asyncio.sleep(1.0)
    producer = await asyncpg.connect(dsn)
    queries = Queries(AsyncpgDriver(producer))
    for n in range(int(rate * seconds)):
        key = str(n).encode()
        sent[key] = time.perf_counter()
        await queries.enqueue("timed", key)
        await asyncio.sleep(1 / rate)
    await asyncio.sleep(1.0)
    manager.shutdown.set()
    await runner
    await producer.close()
    await conn.close()
    return observed.summary()
