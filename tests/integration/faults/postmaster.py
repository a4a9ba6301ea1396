"""A PostgreSQL server of the fault tests' own, which they SIGKILL and restart on the same port and
data folder: restarted at once, after staying down, or held in recovery (it answers SQLSTATE 57P03
"the database system is not accepting connections" until promoted), as a crashed primary does
while it replays its log."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from outbound_sender.embedded import EmbeddedPostgres, remove_tree
from outbound_sender.store.db import connect
from outbound_sender.store.migrations import migrate

DATABASE = "faults"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in state  # a zombie is dead, whoever reaps it


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:  # the field after the state is the parent pid
                    found.append(int(entry.name))
    return found


class Postmaster:
    def __init__(self, folder: Path) -> None:
        self.server = EmbeddedPostgres(folder / "data", fast_unsafe=True)
        self.kills = 0

    @property
    def data(self) -> Path:
        return self.server.data_dir

    @property
    def dsn(self) -> str:
        return self.server.dsn(DATABASE)

    def pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().splitlines()[0])

    async def create(self) -> None:
        await asyncio.to_thread(self.server.start)
        admin = await asyncpg.connect(self.server.dsn())
        try:
            # fsync off survives a killed postmaster (the kernel keeps the writes), an asynchronous
            # commit does not: commits must be durable here, as in production.
            await admin.execute("ALTER SYSTEM SET synchronous_commit = on")
            await admin.execute("SELECT pg_reload_conf()")
            await admin.execute(f"CREATE DATABASE {DATABASE}")
        finally:
            await admin.close()
        conn = await connect(self.dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()

    async def kill(self) -> None:
        """SIGKILL the postmaster; return when it and its backends are gone (orphaned backends still
        attached to the old shared memory block would refuse a restart)."""
        pid = self.pid()
        family = [pid, *_children(pid)]
        os.kill(pid, signal.SIGKILL)
        self.kills += 1
        async with asyncio.timeout(30):
            while any(_alive(p) for p in family):
                await asyncio.sleep(0.05)

    async def start(self, *, in_recovery: bool = False) -> None:
        """Start on the same port and data. `in_recovery`: as a standby without hot standby, so
        every connection is refused with 57P03 until promote()."""
        lock = self.data / "postmaster.pid"
        if lock.exists() and not _alive(self.pid()):
            lock.unlink()  # the killed postmaster may linger as a zombie, which PostgreSQL takes as alive
        options = f"-p {self.server.port}"
        if in_recovery:
            (self.data / "standby.signal").touch()
            options += " -c hot_standby=off"
        args = ["-D", str(self.data), "-l", str(self.data / "server.log"), "-o", options, "-W", "start"]
        await asyncio.to_thread(self.server._pg, "pg_ctl", *args)
        await self._wait_answering(in_recovery)

    async def promote(self) -> None:
        await asyncio.to_thread(self.server._pg, "pg_ctl", "-D", str(self.data), "-w", "-t", "60", "promote")
        await self._wait_answering(False)

    async def _wait_answering(self, in_recovery: bool) -> None:
        """Until the server refuses with 57P03 (in recovery) or accepts a query."""
        async with asyncio.timeout(60):
            while True:
                try:
                    conn = await asyncpg.connect(self.dsn, timeout=2)
                except asyncpg.CannotConnectNowError:
                    if in_recovery:
                        return
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                    pass
                else:
                    await conn.close()
                    if not in_recovery:
                        return
                await asyncio.sleep(0.05)

    async def restart(self, *, down: float = 0.0, in_recovery: float = 0.0) -> float:
        """Kill, stay down `down` seconds (connections refused), start (held in recovery for
        `in_recovery` seconds); return the monotonic time at which it accepts connections again."""
        await self.kill()
        await asyncio.sleep(down)
        await self.start(in_recovery=in_recovery > 0)
        if in_recovery > 0:
            await asyncio.sleep(in_recovery)
            await self.promote()
        return time.monotonic()

    def stop(self) -> None:
        self.server.stop()


@contextlib.asynccontextmanager
async def postmaster() -> AsyncIterator[Postmaster]:
    folder = Path(tempfile.mkdtemp(prefix="outbound-faults-"))
    server = Postmaster(folder)
    try:
        await server.create()
        yield server
    finally:
        await asyncio.to_thread(server.stop)
        remove_tree(folder)
