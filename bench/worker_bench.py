"""B1, B2, B3: our worker, measured on the same server as L and P."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import asyncpg
import httpx

from bench.common import Latencies, Stopwatch, count_status, load_messages, vacuum
from outbound_sender.config import WorkerSettings
from outbound_sender.domain import Channel, NewMessage, OutboundMessage
from outbound_sender.embedded import free_port
from outbound_sender.providers.base import SendResult
from outbound_sender.providers.null import NullProvider
from outbound_sender.providers.sandbox import SandboxProvider
from outbound_sender.providers.transport import provider_client
from outbound_sender.store.db import connect
from outbound_sender.store.messages import enqueue
from outbound_sender.worker.dispatch import Dispatcher
from outbound_sender.worker.runner import APPLICATION, OutboundJobWorker


async def _drain(dsn: str, worker: OutboundJobWorker, count: int) -> float:
    stop = asyncio.Event()
    with Stopwatch() as watch:
        task = asyncio.create_task(worker.run(stop))
        while worker.completed_total < count:
            await asyncio.sleep(0.01)
    stop.set()
    await task
    assert await count_status(dsn, "SENT") == count
    return count / watch.seconds


async def b1_null_provider(dsn: str, count: int, batch: int = 10) -> float:
    """Messages/s through the whole pipeline when the provider costs nothing (one process)."""
    await load_messages(dsn, count)
    await vacuum(dsn)
    settings = WorkerSettings(batch_size=batch, max_in_flight=max(2 * batch, 50), poll_interval_ms=100)
    worker = OutboundJobWorker(dsn, Dispatcher([NullProvider()]), settings=settings)
    return await _drain(dsn, worker, count)


def _start_sandbox(latency_ms: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [sys.executable, "-m", "outbound_sender.cli", "sandbox", "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            config = httpx.get(url + "/_sandbox/config", timeout=1).json()
            httpx.put(url + "/_sandbox/config", json={**config, "latency_ms": latency_ms, "rules": []})
            return process, url
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise TimeoutError("sandbox did not start")


async def _connections(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
        return int(await conn.fetchval(query, APPLICATION))
    finally:
        await conn.close()


async def b2_http_sandbox(dsn: str, count: int, in_flight: int = 200, latency_ms: float = 100) -> dict[str, float]:
    """Messages/s over real HTTP against the sandbox at `latency_ms`, `in_flight` concurrent sends."""
    await load_messages(dsn, count)
    await vacuum(dsn)
    process, url = _start_sandbox(latency_ms)
    try:
        client = provider_client(in_flight, connect_timeout=5, read_timeout=20)
        provider = SandboxProvider(client, url)
        settings = WorkerSettings(batch_size=50, max_in_flight=in_flight, poll_interval_ms=100)
        worker = OutboundJobWorker(dsn, Dispatcher([provider]), settings=settings)
        watcher = asyncio.create_task(_watch_connections(dsn))
        rate = await _drain(dsn, worker, count)
        peak = await _stop_watch(watcher)
        await provider.aclose()
    finally:
        process.terminate()
        process.wait(10)
    return {"msgs_per_s": rate, "db_connections": float(peak)}


async def _watch_connections(dsn: str) -> int:
    """Peak number of the worker's connections seen in pg_stat_activity while it runs."""
    peak = 0
    try:
        while True:
            peak = max(peak, await _connections(dsn))
            await asyncio.sleep(0.2)
    except asyncio.CancelledError:
        return peak


async def _stop_watch(task: asyncio.Task[int]) -> int:
    task.cancel()
    return await task


class _Timed(NullProvider):
    """Measures from the enqueue time carried in the body (same process, same clock)."""

    def __init__(self, observed: Latencies) -> None:
        super().__init__()
        self.observed = observed

    async def send(self, message: OutboundMessage) -> SendResult:
        self.observed.add(time.perf_counter() - float(message.body or "nan"))
        return await super().send(message)


async def b3_latency(dsn: str, rate: float, seconds: float) -> dict[str, float]:
    """Enqueue (commit) -> provider call latency at `rate` msgs/s; NOTIFY wakes the worker."""
    observed = Latencies()
    worker = OutboundJobWorker(dsn, Dispatcher([_Timed(observed)]), settings=WorkerSettings())
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await asyncio.sleep(1.0)
    producer = await connect(dsn)
    for _ in range(int(rate * seconds)):
        stamp = repr(time.perf_counter())
        await enqueue(
            producer, NewMessage(org_id="bench", channel=Channel.SMS, to_recipient="+15550001111", body=stamp)
        )
        await asyncio.sleep(1 / rate)
    await asyncio.sleep(1.0)
    stop.set()
    await task
    await producer.close()
    return observed.summary()


async def notify_floor(dsn: str, rate: float, seconds: float) -> dict[str, float]:
    """The raw LISTEN/NOTIFY round trip between two connections: the floor for B3."""
    observed = Latencies()
    listener = await asyncpg.connect(dsn)
    sender = await asyncpg.connect(dsn)
    sent: dict[str, float] = {}
    await listener.add_listener("floor", lambda *args: observed.add(time.perf_counter() - sent[args[3]]))
    for n in range(int(rate * seconds)):
        sent[str(n)] = time.perf_counter()
        await sender.execute("SELECT pg_notify('floor', $1)", str(n))
        await asyncio.sleep(1 / rate)
    await asyncio.sleep(0.5)
    await listener.close()
    await sender.close()
    return observed.summary()
