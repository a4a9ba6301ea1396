"""`outbound worker` with OUTBOUND_WORKER_PROCESSES > 1: a supervisor and N worker processes in one pod.

Real processes against a real database and the generic sandbox; each message has its own recipient,
so the sandbox's per-recipient accept count tells how many times it reached the provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from outbound_sender.domain import Channel, NewMessage
from outbound_sender.embedded import free_port
from outbound_sender.store.messages import enqueue_many
from tests.processes import outbound, sandbox_process, stop, worker_env
from tests.workers import statuses, wait_for

MESSAGES = 300


def recipient(n: int) -> str:
    return f"+1555400{n:04d}"


async def enqueue_all(db: asyncpg.Connection, count: int = MESSAGES) -> None:
    batch = [NewMessage(org_id="o", channel=Channel.SMS, to_recipient=recipient(n), body="x") for n in range(count)]
    await enqueue_many(db, batch)


def pod(dsn: str, sandbox: str, processes: int, port: int, **settings: str) -> subprocess.Popen[bytes]:
    values = {"outbound_worker_processes": str(processes), "outbound_http_port": str(port)}
    env = worker_env(dsn, sandbox, **{"outbound_worker_batch_size": "20", **values, **settings})
    return outbound("worker", env=env)


def child_pids(parent: int) -> list[int]:
    """The processes whose parent is `parent` (from /proc/<pid>/stat)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return sorted(found)


def running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def tcp_ports(pid: int) -> set[int]:
    """Local ports of the process's TCP sockets (its fds' inodes in /proc/net/tcp*)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            if (target := os.readlink(fd)).startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rpartition(":")[2], 16))
    return ports


async def children(supervisor: subprocess.Popen[bytes], count: int, timeout: float = 60) -> list[int]:
    """The supervisor's worker processes, once all `count` of them run."""
    async with asyncio.timeout(timeout):
        while len(found := child_pids(supervisor.pid)) < count:
            assert supervisor.poll() is None, f"the supervisor ended: {supervisor.returncode}"
            await asyncio.sleep(0.1)
    return found


async def get(url: str) -> httpx.Response:
    return await asyncio.to_thread(httpx.get, url, timeout=5)


async def wait_ready(port: int, timeout: float = 60) -> None:
    async with asyncio.timeout(timeout):
        while True:
            try:
                if (await get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sent_total(scraped: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    return sum(v for (name, _), v in scraped.items() if name == "outbound_message_send_success_total")


async def scrape_until_sent(
    port: int, sent: int, timeout: float = 30
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The pod's /metrics once its send counter (summed over the processes) reads `sent`; fails if it
    goes past or never gets there (a counter is incremented just after its row is committed)."""
    async with asyncio.timeout(timeout):
        while (total := sent_total(scraped := samples((await get(f"http://127.0.0.1:{port}/metrics")).text))) < sent:
            await asyncio.sleep(0.1)
    assert total == sent
    return scraped


async def connections_per_process(db: asyncpg.Connection, pids: list[int]) -> dict[int, int]:
    """Database connections of each process: pg_stat_activity's client ports matched to the process's sockets."""
    ports = {r["client_port"] for r in await db.fetch("SELECT client_port FROM pg_stat_activity WHERE client_port > 0")}
    return {pid: len(tcp_ports(pid) & ports) for pid in pids}


async def test_three_processes_share_the_pod_send_everything_once_and_drain_on_sigterm(
    db: asyncpg.Connection, db_dsn: str
) -> None:
    await enqueue_all(db)
    port = free_port()
    slow = {"outbound_worker_max_in_flight": "5", "outbound_worker_batch_size": "5"}  # ~75 msg/s: SIGTERM mid-run
    with sandbox_process(latency_ms=200) as sandbox:
        supervisor = pod(db_dsn, sandbox, 3, port, **slow)
        try:
            workers = await children(supervisor, 3)
            await wait_ready(port)
            await wait_for(db, "SELECT count(*) >= 30 FROM outbound_message WHERE status = 'SENT'", timeout=60)
            per_process = await connections_per_process(db, workers)
            sending = await db.fetchval("SELECT count(*) FROM outbound_message WHERE status = 'SENDING'")
        finally:
            assert stop(supervisor, timeout=60) == 0
        assert not any(running(pid) for pid in workers)
        drained = await statuses(db)
        sent_first = drained.get("SENT", 0)
        owners = await db.fetchval("SELECT count(DISTINCT worker_id) FROM outbound_attempt")
        print(f"\nN=3: connections per process {per_process}; {owners} lease owners; {sending} SENDING at SIGTERM")
        print(f"after SIGTERM: {drained}")
        assert sending > 0  # stopped mid-run
        assert drained.get("QUEUED", 0) > 0
        assert "SENDING" not in drained
        assert owners == 3
        assert all(1 <= n <= 3 for n in per_process.values()), per_process

        second = pod(db_dsn, sandbox, 2, port)
        try:
            await wait_ready(port)
            await wait_for(db, "SELECT count(*) = $1 FROM outbound_message WHERE status = 'SENT'", MESSAGES, timeout=90)
            scraped = await scrape_until_sent(port, MESSAGES - sent_first)
        finally:
            assert stop(second, timeout=60) == 0
        accepted = (await get(sandbox + "/_sandbox/stats")).json()["recipients"]["accepted"]
    duplicates = sum(count - 1 for count in accepted.values())
    print(f"N=3 then N=2: messages={MESSAGES} lost={MESSAGES - len(accepted)} duplicates={duplicates}")
    assert await statuses(db) == {"SENT": MESSAGES}
    assert set(accepted) == {recipient(n) for n in range(MESSAGES)}
    assert duplicates == 0
    assert [k for k in scraped if k[0] == "outbound_worker_last_poll_timestamp_seconds"] == [
        ("outbound_worker_last_poll_timestamp_seconds", ())
    ]
    assert scraped[("outbound_worker_in_flight", ())] >= 0
    assert scraped[("outbound_metrics_last_refresh_timestamp_seconds", ())] > 0


async def test_a_killed_worker_process_takes_the_pod_down_and_nothing_is_lost(
    db: asyncpg.Connection, db_dsn: str
) -> None:
    await enqueue_all(db)
    port = free_port()
    settings = {"outbound_worker_lease_seconds": "3", "outbound_worker_recovery_interval_ms": "200"}
    settings |= {"outbound_provider_connect_timeout_seconds": "0.5", "outbound_provider_read_timeout_seconds": "2"}
    with sandbox_process(latency_ms=100) as sandbox:
        supervisor = pod(db_dsn, sandbox, 2, port, **settings)
        try:
            victim, survivor = await children(supervisor, 2)
            await wait_ready(port)
            await wait_for(db, "SELECT count(*) >= 30 FROM outbound_message WHERE status = 'SENT'", timeout=60)
            sending = await db.fetchval("SELECT count(*) FROM outbound_message WHERE status = 'SENDING'")
            os.kill(victim, signal.SIGKILL)
            started = time.monotonic()
            code = await asyncio.to_thread(supervisor.wait, 60)
        finally:
            stop(supervisor, timeout=60)
        print(f"\nSIGKILL of one of 2 processes: supervisor exit {code} after {time.monotonic() - started:.1f}s")
        assert code == 1
        assert not running(survivor)
        again = pod(db_dsn, sandbox, 2, port, **settings)
        try:
            await wait_for(db, "SELECT count(*) = $1 FROM outbound_message WHERE status = 'SENT'", MESSAGES, timeout=90)
        finally:
            assert stop(again, timeout=60) == 0
        accepted = (await get(sandbox + "/_sandbox/stats")).json()["recipients"]["accepted"]
    duplicates = sum(count - 1 for count in accepted.values())
    print(
        f"messages={MESSAGES} lost={MESSAGES - len(accepted)} duplicates={duplicates} (SENDING at the kill: {sending})"
    )
    assert set(accepted) == {recipient(n) for n in range(MESSAGES)}
    assert duplicates <= sending


async def test_the_workers_drain_when_their_supervisor_is_killed(db: asyncpg.Connection, db_dsn: str) -> None:
    await enqueue_all(db, 100)
    port = free_port()
    with sandbox_process(latency_ms=300) as sandbox:
        supervisor = pod(db_dsn, sandbox, 2, port)
        workers = await children(supervisor, 2)
        await wait_for(db, "SELECT count(*) > 0 FROM outbound_message WHERE status = 'SENDING'", timeout=60)
        stop(supervisor, signal.SIGKILL)
        async with asyncio.timeout(60):
            while any(running(pid) for pid in workers):
                await asyncio.sleep(0.1)
        assert "SENDING" not in await statuses(db)
