"""P: PGQueuer (the reference Python PostgreSQL queue) on the same server, same batch size.

P runs PGQueuer as its own benchmark tool runs it by default: several dequeuers (5 QueueManagers,
each on its own connection) pulling batches of 10, so it is compared at its best documented
setting, not as a single consumer.
"""

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


DEQUEUERS = 5


async def _queued(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return sum(row.count for row in await Queries(AsyncpgDriver(conn)).queue_size())
    finally:
        await conn.close()


async def drain(dsn: str, count: int, *, dequeuers: int = DEQUEUERS, batch: int = 10) -> dict[str, float]:
    """Jobs per second to drain `count` no-op jobs with `dequeuers` QueueManagers side by side."""
    await _install(dsn)
    await _enqueue(dsn, count)
    await vacuum(dsn)
    conns = [await asyncpg.connect(dsn) for _ in range(dequeuers)]
    done = 0

    def manager(conn: asyncpg.Connection) -> QueueManager:
        queue = QueueManager(Queries(AsyncpgDriver(conn)))

        @queue.entrypoint("noop")
        async def noop(_job: object) -> None:
            nonlocal done
            done += 1

        return queue

    managers = [manager(conn) for conn in conns]
    try:
        with Stopwatch() as watch:
            await asyncio.gather(*(m.run(batch_size=batch, mode=QueueExecutionMode.drain) for m in managers))
    finally:
        for conn in conns:
            await conn.close()
    left = await _queued(dsn)
    if done != count or left:
        raise RuntimeError(f"P: {done} of {count} jobs run, {left} left in the queue")
    return {"msgs_per_s": done / watch.seconds, "completed": done}


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
