"""A fault drill: real `outbound worker` processes send a batch through the generic sandbox while
faults are injected; then every message is counted, in the manner of a Jepsen queue checker.

Each message has its own recipient, so the sandbox's accepts per recipient say how many times the
provider took it. The checker reports:
- lost: messages not SENT at the end, or never accepted by the provider;
- duplicates: extra accepts (a message accepted n times adds n - 1), to be compared with the
  sends in flight when the faults struck (the only ones a fault may duplicate);
- stuck: messages in no final state when the drill's deadline passed;
- recovery: per fault, seconds from its end until every live worker recorded a sent message again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from outbound_sender.domain import Channel, NewMessage
from outbound_sender.embedded import free_port
from outbound_sender.store.db import connect
from outbound_sender.store.messages import enqueue_many
from tests.processes import outbound, worker_env

FINAL = ("SENT", "FAILED")
# What the checker's own queries meet while the database restarts (its judgement, not the worker's).
RESTARTING = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
)


@dataclass
class Fault:
    name: str
    in_flight: int  # messages SENDING when it struck (what it may duplicate)
    ended_at: dt.datetime | None = None  # database clock when it was over
    recovery: float | None = None  # seconds until every live worker recorded a sent message again


@dataclass
class Report:
    scenario: str
    messages: int
    faults: list[Fault]
    lost: int
    duplicates: int
    duplicated_messages: int
    stuck: int
    deferral_rows: int  # attempt rows of deferrals (a worker's own circuit must not write them)
    seconds: float
    exit_codes: dict[str, int]

    @property
    def in_flight_at_faults(self) -> int:
        return sum(f.in_flight for f in self.faults)

    @property
    def worst_recovery(self) -> float:
        return max((f.recovery for f in self.faults if f.recovery is not None), default=0.0)

    def render(self) -> str:
        lines = [
            f"drill {self.scenario}: {self.messages} messages, {len(self.faults)} faults, {self.seconds:.1f} s",
            f"  lost {self.lost}  stuck {self.stuck}  duplicates {self.duplicates} "
            f"({self.duplicated_messages} messages) against {self.in_flight_at_faults} in flight at the faults"
            f"  worst recovery {self.worst_recovery:.1f} s  deferral rows {self.deferral_rows}",
        ]
        for f in self.faults:
            recovery = "-" if f.recovery is None else f"{f.recovery:.1f} s"
            lines.append(f"    {f.name:<38} in flight {f.in_flight:>3}  recovered in {recovery}")
        return "\n".join(lines)


def recipient(n: int) -> str:
    return f"+1555400{n:04d}"


@dataclass
class Drill:
    scenario: str
    dsn: str
    sandbox: str
    settings: dict[str, str]
    messages: int = 0
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    exit_codes: dict[str, int] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    logs: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="outbound-drill-")))

    # ---- the database, across its restarts ---------------------------------------------------
    async def value(self, query: str, *args: Any, timeout: float = 60) -> Any:
        """One query on a fresh connection, retried while the database is restarting."""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    conn = await connect(self.dsn, timeout=5)
                    try:
                        return await conn.fetchval(query, *args)
                    finally:
                        await conn.close()
                except RESTARTING:
                    await asyncio.sleep(0.05)

    async def until(self, query: str, *args: Any, timeout: float = 120) -> None:
        async with asyncio.timeout(timeout):
            while not await self.value(query, *args):
                await asyncio.sleep(0.05)

    async def enqueue(self, count: int) -> None:
        """A new wave of messages (waves keep work queued at every fault, however fast the rest went)."""
        numbers = range(self.messages, self.messages + count)
        batch = [
            NewMessage(org_id="drill", channel=Channel.SMS, to_recipient=recipient(n), body="x", max_attempts=50)
            for n in numbers
        ]
        await self.value("SELECT 1")  # waits while the database restarts
        conn = await connect(self.dsn)
        try:
            await enqueue_many(conn, batch)
        finally:
            await conn.close()
        self.messages += count

    async def sent(self) -> int:
        return int(await self.value("SELECT count(*) FROM outbound_message WHERE status = 'SENT'"))

    async def progress(self, count: int) -> None:
        """Wait until `count` more messages are SENT."""
        target = await self.sent() + count
        await self.until("SELECT count(*) >= $1 FROM outbound_message WHERE status = 'SENT'", target)

    async def in_flight(self, owner: str | None = None) -> int:
        query = (
            "SELECT count(*) FROM outbound_message WHERE status = 'SENDING' AND ($1::text IS NULL OR lease_owner = $1)"
        )
        return int(await self.value(query, owner))

    # ---- workers ----------------------------------------------------------------------------------
    def start(self, name: str) -> None:
        env = worker_env(
            self.dsn, self.sandbox, outbound_worker_id=name, outbound_http_port=str(free_port()), **self.settings
        )
        log = (self.logs / f"{name}.log").open("ab")
        self.workers[name] = outbound("worker", env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    async def up(self, *names: str, wave: int) -> None:
        """Start workers and wait until each has sent and recorded (start-up is slow on a busy
        machine, and recovery is measured on running workers)."""
        for name in names:
            self.start(name)
        since = await self.value("SELECT clock_timestamp()")
        await self.sending_again(list(names), since, wave=wave, timeout=180)

    async def sending_again(self, names: list[str], since: dt.datetime, *, wave: int, timeout: float) -> None:
        """Until each of `names` has recorded a sent message since `since`, keeping work queued (a
        wave must not be gone to the others before a slower worker could take its share)."""
        recorded = (
            "SELECT count(DISTINCT worker_id) FROM outbound_attempt"
            " WHERE outcome = 'SENT' AND created_at >= $1 AND worker_id = ANY($2::text[])"
        )
        queued = "SELECT count(*) FROM outbound_message WHERE status = 'QUEUED'"
        async with asyncio.timeout(timeout):
            while await self.value(recorded, since, names) < len(names):
                if await self.value(queued) < wave // 3:
                    await self.enqueue(wave // 3)
                await asyncio.sleep(0.1)

    def signal(self, name: str, sig: int) -> None:
        os.kill(self.workers[name].pid, sig)

    async def wait_exit(self, name: str, timeout: float = 60) -> int:
        code = await asyncio.to_thread(self.workers.pop(name).wait, timeout)
        self.exit_codes[name] = code
        return code

    async def stop_all(self) -> None:
        for name in list(self.workers):
            self.signal(name, signal.SIGTERM)
        for name in list(self.workers):
            await self.wait_exit(name)

    def kill_all(self) -> None:
        """Cleanup after a failed drill: no worker outlives its test."""
        for process in self.workers.values():
            if process.poll() is None:
                process.kill()
                process.wait(10)

    # ---- faults -------------------------------------------------------------------------------------
    def fault(self, name: str, in_flight: int) -> Fault:
        record = Fault(name, in_flight)
        self.faults.append(record)
        return record

    async def ended(self, record: Fault, *, wave: int, within: float = 10.0) -> None:
        """The fault is over: wait until every live worker has sent and recorded a message again."""
        record.ended_at = await self.value("SELECT clock_timestamp()")
        started = time.monotonic()
        try:
            await self.sending_again(list(self.workers), record.ended_at, wave=wave, timeout=within)
        except TimeoutError:
            return  # recovery stays None: the report and the bounds show it
        record.recovery = time.monotonic() - started

    # ---- the checker ------------------------------------------------------------------------------
    async def settle(self, timeout: float = 90) -> None:
        """Wait (bounded) until every message is in a final state."""
        query = "SELECT count(*) = $1 FROM outbound_message WHERE status = ANY($2::text[])"
        with contextlib.suppress(TimeoutError):  # what is not final then is counted as stuck
            await self.until(query, self.messages, list(FINAL), timeout=timeout)

    async def report(self) -> Report:
        stats = (await asyncio.to_thread(httpx.get, self.sandbox + "/_sandbox/stats")).json()
        accepted: dict[str, int] = stats["recipients"]["accepted"]
        conn = await connect(self.dsn)
        try:
            rows = await conn.fetch("SELECT to_recipient, status FROM outbound_message")
            deferrals = await conn.fetchval("SELECT count(*) FROM outbound_attempt WHERE outcome = 'DEFER'")
        finally:
            await conn.close()
        status = {r["to_recipient"]: r["status"] for r in rows}
        lost = sum(1 for to, s in status.items() if s != "SENT" or accepted.get(to, 0) == 0)
        stuck = sum(1 for s in status.values() if s not in FINAL)
        return Report(
            scenario=self.scenario,
            messages=self.messages,
            faults=self.faults,
            lost=lost,
            duplicates=sum(n - 1 for n in accepted.values() if n > 1),
            duplicated_messages=sum(1 for n in accepted.values() if n > 1),
            stuck=stuck,
            deferral_rows=deferrals,
            seconds=time.monotonic() - self.started,
            exit_codes=dict(self.exit_codes),
        )


async def sandbox_rules(url: str, **config: Any) -> None:
    """Change the sandbox's behaviour at run time (PUT /_sandbox/config)."""
    current = (await asyncio.to_thread(httpx.get, url + "/_sandbox/config")).json()
    response = await asyncio.to_thread(httpx.put, url + "/_sandbox/config", json={**current, **config})
    response.raise_for_status()
