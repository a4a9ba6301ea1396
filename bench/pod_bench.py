"""B1N and B2': one worker pod of N processes (`outbound worker`, OUTBOUND_WORKER_PROCESSES=N), as
Kubernetes runs it, and what held it back.

The messages are loaded scheduled for tomorrow (send_at); once the pod is ready (every process
started), one statement makes them all due, and the rate is counted on the database's clock from that moment to the last
`sent_at`, so start-up costs nothing. Meanwhile the CPU time of every process involved is read from
/proc: the pod's worker processes (each), its supervisor, the sandbox provider and the PostgreSQL
server. "What the cores allow" is the rate at which that CPU cost per message would fill every CPU
of the machine; the process nearest to one full CPU, or the machine's CPUs, is named as the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from bench.common import count_status, load_messages, vacuum
from bench.worker_bench import _start_sandbox, _tree
from outbound_sender.embedded import free_port
from outbound_sender.worker.cpus import default_processes

K_WIDE = 1000  # B2': sends in flight over the pod
LATENCY_MS = 100.0
TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


@dataclass
class CpuWatch:
    """CPU seconds used by groups of process trees since `start`, sampled until `stop`."""

    roots: dict[str, int]
    first: dict[int, float] = field(default_factory=dict)
    last: dict[int, float] = field(default_factory=dict)
    group: dict[int, str] = field(default_factory=dict)

    def sample(self, *, baseline: bool = False) -> None:
        for name, root in self.roots.items():
            for pid in _tree(root):
                if (used := _cpu_seconds(pid)) is None:
                    continue
                self.group.setdefault(pid, name if pid != root or name != "pod" else "supervisor")
                self.first.setdefault(pid, used if baseline else 0.0)
                self.last[pid] = used

    def used(self) -> dict[int, float]:
        return {pid: self.last[pid] - self.first[pid] for pid in self.last}

    def by_group(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for pid, seconds in self.used().items():
            totals[self.group[pid]] = totals.get(self.group[pid], 0.0) + seconds
        return totals


async def _postmaster(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:  # read while the backend lives: once the connection closes its /proc entry goes
        return _parent(int(await conn.fetchval("SELECT pg_backend_pid()")))
    finally:
        await conn.close()


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@contextlib.asynccontextmanager
async def _pod(env: dict[str, str], port: int, timeout: float = 120) -> AsyncIterator[asyncio.subprocess.Process]:
    """`outbound worker` running and ready (every worker process started); SIGTERM at the end."""
    command = [sys.executable, "-m", "outbound_sender.cli", "worker"]
    pod = await asyncio.create_subprocess_exec(*command, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient() as client, asyncio.timeout(timeout):
            while True:
                if pod.returncode is not None:
                    raise RuntimeError(f"the worker pod exited ({pod.returncode}) before it was ready")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"http://127.0.0.1:{port}/readyz", timeout=2)).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        yield pod
    finally:
        if pod.returncode is None:
            pod.terminate()
        await asyncio.wait_for(pod.wait(), 120)


async def _release_and_wait(dsn: str, count: int, watch: CpuWatch, timeout: float = 600) -> float:
    """Make the loaded messages due, wait until all are SENT; messages/s on the database clock."""
    conn = await asyncpg.connect(dsn)
    try:
        watch.sample(baseline=True)
        started = await conn.fetchval("WITH due AS (UPDATE outbound_message SET send_at = now()) SELECT now()")
        deadline = time.monotonic() + timeout
        while await conn.fetchval("SELECT count(*) FROM outbound_message WHERE status = 'SENT'") < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"not every one of {count} messages was sent in {timeout:.0f} s")
            watch.sample()
            await asyncio.sleep(0.1)
        watch.sample()
        last = await conn.fetchval("SELECT max(sent_at) FROM outbound_message")
    finally:
        await conn.close()
    return float(count / (last - started).total_seconds())


def _figures(rate: float, count: int, watch: CpuWatch, processes: int) -> dict[str, float]:
    """The rate, CPU per group (in CPUs), what the machine's cores allow and which process is nearest
    one full CPU (index into the groups: 0 a worker process, 1 supervisor, 2 sandbox, 3 PostgreSQL)."""
    seconds = count / rate
    groups = watch.by_group()
    workers = [s for pid, s in watch.used().items() if watch.group[pid] == "pod"]
    total = sum(groups.values())
    cores = os.cpu_count() or 1
    busiest = {
        0: max(workers, default=0.0) / seconds,
        1: groups.get("supervisor", 0.0) / seconds,
        2: groups.get("sandbox", 0.0) / seconds,
        3: groups.get("postgres", 0.0) / seconds,
    }
    return {
        "msgs_per_s": rate,
        "processes": float(processes),
        "cpu_workers": sum(workers) / seconds,
        "cpu_worker_max": busiest[0],
        "cpu_supervisor": busiest[1],
        "cpu_sandbox": busiest[2],
        "cpu_postgres": busiest[3],
        "cpu_total": total / seconds,
        "cores_allow_msgs_per_s": cores * count / total if total else 0.0,
        "limit": float(max(busiest, key=lambda k: busiest[k])),
    }


async def pod_drain(
    dsn: str, count: int, *, kind: str, in_flight: int, processes: int | None = None, batch: int = 50
) -> dict[str, float]:
    """Send `count` messages through one `outbound worker` pod of `processes` (default: as the
    command would choose here) with `in_flight` sends over the pod, provider `kind` (null, or the
    generic sandbox at LATENCY_MS)."""
    n = processes or default_processes()
    await load_messages(dsn, count)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE outbound_message SET send_at = now() + interval '1 day'")
    finally:
        await conn.close()
    await vacuum(dsn)
    port = free_port()
    per_process = max(1, in_flight // n)
    env = {
        "DATABASE_URL": dsn,
        "OUTBOUND_PROVIDER_KIND": kind,
        "OUTBOUND_WORKER_PROCESSES": str(n),
        "OUTBOUND_WORKER_MAX_IN_FLIGHT": str(per_process),
        "OUTBOUND_WORKER_BATCH_SIZE": str(min(batch, per_process)),
        "OUTBOUND_WORKER_POLL_INTERVAL_MS": "100",
        "OUTBOUND_HTTP_HOST": "127.0.0.1",
        "OUTBOUND_HTTP_PORT": str(port),
        "OUTBOUND_LOG_LEVEL": "ERROR",  # not the "not ready" of every probe while the processes start
    }
    sandbox = _start_sandbox(LATENCY_MS) if kind == "generic" else None
    try:
        if sandbox is not None:
            env["OUTBOUND_PROVIDER_SANDBOX_URL"] = sandbox[1]
        async with _pod(env, port) as pod:
            roots = {"pod": pod.pid, "postgres": await _postmaster(dsn)}
            watch = CpuWatch(roots | ({"sandbox": sandbox[0].pid} if sandbox else {}))
            rate = await _release_and_wait(dsn, count, watch)
    finally:
        if sandbox is not None:
            sandbox[0].terminate()
            sandbox[0].wait(10)
    assert await count_status(dsn, "SENT") == count
    return _figures(rate, count, watch, n)


LIMITS = ("a worker process's CPU", "the supervisor's CPU", "the sandbox's CPU", "PostgreSQL's CPU")
