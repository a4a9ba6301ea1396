"""B1, B2, B3 and the memory check: our worker, measured on the same server as L and P."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx

from bench.common import Latencies, Stopwatch, count_status, load_messages, vacuum
from outbound_sender.embedded import free_port
from outbound_sender.providers.null import NullProvider
from outbound_sender.providers.sandbox import SandboxProvider
from outbound_sender.providers.transport import provider_client
from outbound_sender.store.gateway import APPLICATION
from outbound_sender.worker.dispatch import Dispatcher
from outbound_sender.worker.service import OutboundJobWorker
from outbound_sender.worker.settings import WorkerSettings


async def _drain(dsn: str, worker: OutboundJobWorker, count: int) -> float:
    """Messages/s to send `count` queued messages: counted SENT, over the time until the last one."""
    stop = asyncio.Event()
    with Stopwatch() as watch:
        task = asyncio.create_task(worker.run(stop))
        while worker.completed_total < count:
            await asyncio.sleep(0.01)
    stop.set()
    await task
    assert await count_status(dsn, "SENT") == count
    return count / watch.seconds


async def b1_null_provider(dsn: str, count: int, batch: int = 10) -> dict[str, float]:
    """Messages/s through the whole pipeline when the provider costs nothing (one process)."""
    await load_messages(dsn, count)
    await vacuum(dsn)
    settings = WorkerSettings(batch_size=batch, max_in_flight=max(2 * batch, 50), poll_interval_ms=100)
    worker = OutboundJobWorker(dsn, Dispatcher([NullProvider()]), settings=settings)
    return {"msgs_per_s": await _drain(dsn, worker, count), "completed": count}


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


MEMORY_K = 1000  # sends in flight for the memory measure (goal: <= 150 MB per worker process)


def _tree(root: int) -> list[int]:
    """`root` and every process below it (a worker may run several processes)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def _peak_rss_mb(pids: list[int]) -> dict[int, float]:
    """Each live process's peak resident set (VmHWM) in MB."""
    peaks: dict[int, float] = {}
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        if match:
            peaks[pid] = int(match[1]) / 1024
    return peaks


async def _in_flight(client: httpx.AsyncClient, url: str) -> float:
    try:
        text = (await client.get(url, timeout=2)).text
    except httpx.HTTPError:
        return 0.0
    return sum(float(m[1]) for m in re.finditer(r"^outbound_worker_in_flight(?:\{[^}]*\})? (\S+)$", text, re.MULTILINE))


async def memory_at_k(
    dsn: str, count: int, in_flight: int = MEMORY_K, latency_ms: float = 100, timeout: float = 600
) -> dict[str, float]:
    """The `outbound worker` process at `in_flight` concurrent sends (sandbox at `latency_ms`):
    peak RSS per worker process and the peak in-flight it reached. Not a throughput measure."""
    await load_messages(dsn, count)
    await vacuum(dsn)
    process, url = _start_sandbox(latency_ms)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "OUTBOUND_PROVIDER_KIND": "generic",
        "OUTBOUND_PROVIDER_SANDBOX_URL": url,
        "OUTBOUND_WORKER_PROCESSES": "1",  # one process at K: its memory (B2' runs a pod of N)
        "OUTBOUND_WORKER_MAX_IN_FLIGHT": str(in_flight),
        # One claim fills all K slots: the process really holds K sends at once, however slowly a
        # busy machine lets it claim (with small batches it settles far below K).
        "OUTBOUND_WORKER_BATCH_SIZE": str(in_flight),
        "OUTBOUND_WORKER_POLL_INTERVAL_MS": "100",
        "OUTBOUND_HTTP_HOST": "127.0.0.1",
        "OUTBOUND_HTTP_PORT": str(port),
        "OUTBOUND_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "outbound_sender.cli", "worker"]
    worker = await asyncio.create_subprocess_exec(*command, env=env, stdout=subprocess.DEVNULL)
    peak_in_flight = 0.0
    peaks: dict[int, float] = {}
    try:
        async with httpx.AsyncClient() as client:
            deadline = time.monotonic() + timeout
            while (sent := await count_status(dsn, "SENT")) < count:
                if worker.returncode is not None:
                    raise RuntimeError(f"the worker exited ({worker.returncode}) after {sent} of {count} sends")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{sent} of {count} messages sent in {timeout:.0f} s")
                peak_in_flight = max(peak_in_flight, await _in_flight(client, f"http://127.0.0.1:{port}/metrics"))
                peaks |= _peak_rss_mb(_tree(worker.pid))
                await asyncio.sleep(0.1)
            peaks |= _peak_rss_mb(_tree(worker.pid))
    finally:
        if worker.returncode is None:
            worker.terminate()
        await asyncio.wait_for(worker.wait(), 60)
        process.terminate()
        process.wait(10)
    return {
        "rss_mb": max(peaks.values()),
        "processes": float(len(peaks)),
        "peak_in_flight": peak_in_flight,
    }


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
