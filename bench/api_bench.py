"""API create throughput beside the database's own limit, measured in the same run on the same server.

    await run(dsn) -> {
      "db_enqueue_single_msgs_per_s":   the API's insert statement, one message per statement
      "db_enqueue_batch_msgs_per_s":    the API's batch insert, BATCH messages per transaction
      "db_lifecycle_msgs_per_s":        batch enqueue + claim_batch + complete_batch (SENT): the whole
                                        database life of a message, no HTTP, no provider
      "api_single_msgs_per_s":          POST /v1/messages over HTTP keep-alive, CONCURRENCY clients
      "api_batch_msgs_per_s":           POST /v1/messages/batch with BATCH messages per request
      "api_single_p50_ms", "api_single_p99_ms": request latency of the single endpoint
    }

The API runs as its own `outbound api` process (uvicorn, uvloop, httptools), with production defaults
except the rate limit (off). The client is a minimal HTTP/1.1 keep-alive client, so that it costs far
less CPU than the server it measures (this machine has 2 cores for client, server and PostgreSQL).
Every loop is bounded by a count and a timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from outbound_sender.api.auth import create_key
from outbound_sender.domain import Channel, NewMessage
from outbound_sender.embedded import free_port
from outbound_sender.providers.base import SendResult
from outbound_sender.store.db import connect, create_pool
from outbound_sender.store.gateway import PgWorkerGateway
from outbound_sender.store.message_api import create_batch, create_one
from outbound_sender.store.migrations import migrate
from outbound_sender.worker.results import success

CONCURRENCY = 16
BATCH = 100
TIMEOUT_SECONDS = 300
MESSAGE = {"channel": "SMS", "to": "+14155552671", "body": "Your code is 123456"}


@dataclass(frozen=True)
class Sizes:
    """Requests (and database statements) of each phase: single messages, and batches of BATCH."""

    single: int = 4000
    batches: int = 100


def _message(org: str, index: int) -> NewMessage:
    """What the API builds from MESSAGE; the correlation id tells the phases apart."""
    return NewMessage("bench-db", Channel.SMS, "+14155552671", body=f"code {index}", correlation_id=org)


async def _timed(work: Callable[[], Awaitable[int]]) -> float:
    """Messages per second of `work` (which returns how many messages it handled)."""
    started = time.perf_counter()
    async with asyncio.timeout(TIMEOUT_SECONDS):
        count = await work()
    return count / (time.perf_counter() - started)


# The database phases call the store's own functions (the API's create, the worker's claim and
# completion), so the bench cannot drift from the statements and parameters the product sends.
async def _db_single(pool: asyncpg.Pool, count: int) -> int:
    async def client(offset: int) -> None:
        for index in range(offset, count, CONCURRENCY):
            await create_one(pool, _message("single", index), "")

    await asyncio.gather(*(client(n) for n in range(CONCURRENCY)))
    return count


def _batch(org: str) -> list[NewMessage]:
    return [_message(org, i) for i in range(BATCH)]


async def _db_batch(pool: asyncpg.Pool, batches: int) -> int:
    messages = _batch("batch")

    async def client(offset: int) -> None:
        for _ in range(offset, batches, 4):
            await create_batch(pool, messages, "")

    await asyncio.gather(*(client(n) for n in range(4)))
    return batches * BATCH


async def _lifecycle_round(pool: asyncpg.Pool, gateway: PgWorkerGateway, messages: list[NewMessage]) -> int:
    await create_batch(pool, messages, "")
    claimed = await gateway.claim([Channel.SMS], BATCH, "bench", 60.0)
    sent = [success(m, "bench", SendResult(f"b{m.id}", 201, "accepted"), 1) for m in claimed]
    await gateway.complete(sent, "bench")
    return len(claimed)


async def _db_lifecycle(dsn: str, pool: asyncpg.Pool, batches: int) -> int:
    await pool.execute("UPDATE outbound_message SET status = 'SENT' WHERE status = 'QUEUED'")
    gateway, messages = PgWorkerGateway(dsn, pool), _batch("lifecycle")
    rounds = [_lifecycle_round(pool, gateway, messages) for _ in range(batches)]
    done = 0
    for start in range(0, len(rounds), 2):  # two in parallel, like two workers
        done += sum(await asyncio.gather(*rounds[start : start + 2]))
    return done


# ---- HTTP -------------------------------------------------------------------------------------
def _request(path: str, token: str, payload: object) -> bytes:
    body = json.dumps(payload).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    await reader.readexactly(length)
    return int(lines[0].split(" ")[1])


async def _http_load(port: int, request: bytes, requests: int, latencies: list[float]) -> Counter[int]:
    statuses: Counter[int] = Counter()

    async def client(share: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(share):
                started = time.perf_counter()
                statuses[await _exchange(reader, writer, request)] += 1
                latencies.append(time.perf_counter() - started)
        finally:
            writer.close()

    shares = [requests // CONCURRENCY + (n < requests % CONCURRENCY) for n in range(CONCURRENCY)]
    await asyncio.gather(*(client(share) for share in shares))
    return statuses


async def _api_phase(port: int, request: bytes, requests: int, per_request: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    await _http_load(port, request, CONCURRENCY * 4, [])  # warm-up: connections, caches, prepared statements
    started = time.perf_counter()
    async with asyncio.timeout(TIMEOUT_SECONDS):
        statuses = await _http_load(port, request, requests, latencies)
    elapsed = time.perf_counter() - started
    if set(statuses) != {201}:
        raise RuntimeError(f"unexpected answers from the API: {dict(statuses)}")
    return requests * per_request / elapsed, latencies


def _start_api(dsn: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "OUTBOUND_HTTP_HOST": "127.0.0.1",
        "OUTBOUND_HTTP_PORT": str(port),
        "OUTBOUND_API_RATE_LIMIT_PER_SECOND": "0",
        "OUTBOUND_LOG_LEVEL": "WARNING",
        "OUTBOUND_PROVIDER_KIND": "sandbox",
    }
    command = [sys.executable, "-m", "outbound_sender.cli", "api"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _wait_port(port: int) -> None:
    async with asyncio.timeout(30):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return


async def _api_numbers(dsn: str, token: str, sizes: Sizes) -> dict[str, float]:
    port = free_port()
    process = _start_api(dsn, port)
    try:
        await _wait_port(port)
        single, latencies = await _api_phase(port, _request("/v1/messages", token, MESSAGE), sizes.single, 1)
        batch_body = {"messages": [MESSAGE] * BATCH}
        batch, _ = await _api_phase(port, _request("/v1/messages/batch", token, batch_body), sizes.batches, BATCH)
    finally:
        process.terminate()
        process.wait(30)
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "api_single_msgs_per_s": single,
        "api_batch_msgs_per_s": batch,
        "api_single_p50_ms": cuts[49] * 1000,
        "api_single_p99_ms": cuts[98] * 1000,
    }


async def _prepare(dsn: str) -> str:
    conn = await connect(dsn)
    try:
        await migrate(conn)
        return (await create_key(conn, f"bench-{uuid.uuid4().hex[:8]}", "api bench")).token
    finally:
        await conn.close()


async def run(dsn: str, sizes: Sizes = Sizes()) -> dict[str, float]:
    """Measure the database limits, then the API, on the database `dsn` (migrated here if needed)."""
    token = await _prepare(dsn)
    pool = await create_pool(dsn, min_size=CONCURRENCY, max_size=CONCURRENCY)
    try:
        results = {
            "db_enqueue_single_msgs_per_s": await _timed(lambda: _db_single(pool, sizes.single)),
            "db_enqueue_batch_msgs_per_s": await _timed(lambda: _db_batch(pool, sizes.batches)),
            "db_lifecycle_msgs_per_s": await _timed(lambda: _db_lifecycle(dsn, pool, sizes.batches)),
        }
    finally:
        await pool.close()
    results |= await _api_numbers(dsn, token, sizes)
    return results


def main() -> None:
    """`python -m bench.api_bench [DSN]`: on DATABASE_URL, the DSN given, or a throwaway embedded server."""
    from tests import pg

    dsn = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("DATABASE_URL")
    if dsn:
        print(json.dumps(asyncio.run(run(dsn)), indent=2))
        return
    servers = pg.start_server()
    server = next(servers)
    try:
        print(json.dumps(asyncio.run(run(server.dsn("postgres"))), indent=2))
    finally:
        for _ in servers:
            pass


if __name__ == "__main__":
    main()
