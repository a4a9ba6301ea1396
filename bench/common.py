"""Shared pieces of the benchmarks: one PostgreSQL server, a fresh database per measurement."""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import asyncpg

from outbound_sender.domain import Channel, NewMessage
from outbound_sender.embedded import EmbeddedPostgres, pg_bin_dir, remove_tree
from outbound_sender.store.db import connect
from outbound_sender.store.messages import enqueue_many
from outbound_sender.store.migrations import migrate
from outbound_sender.store.queries import parse
from tests.pg import with_database

SQL_DIR = Path(__file__).parent / "sql"
# The text every benchmark message carries (ours and the reference's), about one SMS segment.
BODY = (
    "Your one-time code is 424242. Do not share it with anyone. It expires in ten minutes; "
    "if you did not ask for it, ignore this message."
)
# A timed run must end with at least this share of its queue still waiting: below it, clients may
# have met an empty queue and the figure is capped by the load, not by the work.
MIN_LEFT_SHARE = 0.1


class QueueRanDry(RuntimeError):
    """A timed measurement came near the end of its queue: its figure would be capped."""


@cache
def bench_sql(name: str) -> str:
    """A named statement of bench/sql/*.sql (the bench's own SQL, beside the sender's)."""
    queries: dict[str, str] = {}
    for path in sorted(SQL_DIR.glob("*.sql")):
        queries |= parse(path.read_text())
    return queries[name]


@dataclass(frozen=True)
class Throughput:
    """What a timed run completed: messages with an attempt row written, over wall-clock seconds.

    `cpu_seconds` is the CPU the database server's processes used during the run and `wal_bytes`
    the WAL it wrote: per message, they are the database's cost, and unlike msg/s they hardly move
    when other programs compete for the machine's cores.
    """

    completed: int
    seconds: float
    loaded: int
    left: int
    cpu_seconds: float = float("nan")
    wal_bytes: int = 0
    buffers: int = 0  # shared buffers read or hit in the run's database

    @property
    def msgs_per_s(self) -> float:
        return self.completed / self.seconds

    def check(self, label: str) -> Throughput:
        """Fail loudly when the queue came near empty during the run (the figure would be capped)."""
        if self.completed <= 0:
            raise RuntimeError(f"{label}: no message completed in {self.seconds:.1f} s")
        if self.left < MIN_LEFT_SHARE * self.loaded:
            raise QueueRanDry(
                f"{label}: only {self.left:,} of {self.loaded:,} queued messages were left after "
                f"{self.seconds:.1f} s ({self.completed:,} completed): the run may have met an empty "
                "queue, so its figure is capped by the load. Queue more messages for this machine."
            )
        return self

    @property
    def cpu_us_per_msg(self) -> float:
        return self.cpu_seconds * 1e6 / self.completed

    @property
    def wal_bytes_per_msg(self) -> float:
        return self.wal_bytes / self.completed

    @property
    def buffers_per_msg(self) -> float:
        return self.buffers / self.completed

    def metrics(self) -> dict[str, float]:
        return {
            "msgs_per_s": self.msgs_per_s,
            "completed": self.completed,
            "left": self.left,
            "cpu_us_per_msg": self.cpu_us_per_msg,
            "wal_bytes_per_msg": self.wal_bytes_per_msg,
            "buffers_per_msg": self.buffers_per_msg,
        }


def pgbench(dsn: str, script: str, *, clients: int, seconds: float, variables: Mapping[str, int]) -> float:
    """Run the pgbench `script` for `seconds` with `clients`; the wall-clock seconds it took.

    Prepared mode: each statement is parsed once per client, and \\gset arrays travel as parameters.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "script.sql"
        path.write_text(script)
        command = [str(pg_bin_dir() / "pgbench"), "-n", "-M", "prepared", "-c", str(clients)]
        command += ["-j", str(min(clients, 2)), "-T", str(max(1, round(seconds))), "-f", str(path)]
        command += [f"--define={name}={value}" for name, value in variables.items()]
        with Stopwatch() as watch:
            done = subprocess.run([*command, dsn], check=False, capture_output=True, text=True)
    if done.returncode != 0 or re.search(r"number of failed transactions: [1-9]", done.stdout):
        raise RuntimeError(f"pgbench failed: {done.stdout[-1000:]} {done.stderr[-2000:]}")
    return watch.seconds


_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def server_cpu_seconds(postmaster: int) -> float:
    """CPU (user + system) used so far by a PostgreSQL server: the postmaster, its live processes
    and every process it has reaped (a backend that ended is in the postmaster's children times)."""
    fields = _proc_stat(postmaster)  # fields[0] is the state; utime is field 14 of the whole line
    total = sum(int(value) for value in fields[11:15])
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            child = _proc_stat(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
        if int(child[1]) == postmaster:
            total += int(child[11]) + int(child[12])
    return total / _TICKS


async def _server(conn: asyncpg.Connection) -> tuple[int, int, int]:
    """The postmaster's process id, the current WAL position (bytes) of the server of `conn`, and
    the shared buffers its database has read or hit so far."""
    folder = await conn.fetchval("SHOW data_directory")
    lsn = await conn.fetchval("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn")
    buffers = await conn.fetchval(
        "SELECT blks_hit + blks_read FROM pg_stat_database WHERE datname = current_database()"
    )
    return int((Path(folder) / "postmaster.pid").read_text().split()[0]), int(lsn), int(buffers)


async def _quiet_backends(conn: asyncpg.Connection, application: str) -> None:
    """Wait until the sessions of `application` are gone, so their CPU is in the postmaster's books."""
    async with asyncio.timeout(60):
        while await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", application):
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)  # the postmaster reaps an ended backend just after it leaves pg_stat_activity


async def _counts(dsn: str, query: str) -> tuple[int, int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(bench_sql(query))
    finally:
        await conn.close()
    assert row is not None
    return int(row["completed"]), int(row["sent"]), int(row["queued"])


async def timed_lifecycle(
    dsn: str, label: str, script: str, *, counts: str, batch: int, clients: int, seconds: float
) -> Throughput:
    """Run a claim + complete pgbench `script` for `seconds`; what it completed, from the database.

    `counts` names the query giving (attempt rows, SENT messages, QUEUED messages): the figure is
    attempt rows written over wall-clock time, and the rows must agree with the SENT messages.
    """
    before, _, loaded = await _counts(dsn, counts)
    variables = {"batch": batch}
    conn = await asyncpg.connect(dsn)
    try:
        postmaster, wal_start, buffers_start = await _server(conn)
        cpu_start = server_cpu_seconds(postmaster)
        elapsed = await asyncio.to_thread(pgbench, dsn, script, clients=clients, seconds=seconds, variables=variables)
        await _quiet_backends(conn, "pgbench")
        cpu = server_cpu_seconds(postmaster) - cpu_start
        _, wal_end, buffers_end = await _server(conn)
    finally:
        await conn.close()
    completed, sent, left = await _counts(dsn, counts)
    if completed != sent:
        raise RuntimeError(f"{label}: {completed} attempt rows but {sent} messages SENT")
    return Throughput(
        completed=completed - before,
        seconds=elapsed,
        loaded=loaded,
        left=left,
        cpu_seconds=cpu,
        wal_bytes=wal_end - wal_start,
        buffers=buffers_end - buffers_start,
    )


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


async def create_database(server: Server, *, migrated: bool = True, template: str | None = None) -> str:
    """A new database's name: empty, migrated, or a file copy of the prepared database `template`."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server.admin_dsn)
    try:
        if template:
            await admin.execute(f"CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY")
        else:
            await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    if migrated and not template:
        conn = await connect(server.dsn(name))
        try:
            await migrate(conn)
        finally:
            await conn.close()
    return name


async def drop_database(server: Server, name: str) -> None:
    admin = await asyncpg.connect(server.admin_dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@asynccontextmanager
async def database(server: Server, *, migrated: bool = True, template: str | None = None) -> AsyncIterator[str]:
    """A fresh database for one measurement (see create_database), dropped afterwards."""
    name = await create_database(server, migrated=migrated, template=template)
    try:
        yield server.dsn(name)
    finally:
        await drop_database(server, name)


async def vacuum(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def load_messages(dsn: str, count: int, channel: Channel = Channel.SMS) -> None:
    """Queue `count` messages through the sender's own insert statement, 10,000 per statement."""
    conn = await connect(dsn)
    try:
        chunk = 10_000
        for start in range(0, count, chunk):
            size = min(chunk, count - start)
            batch = [
                NewMessage(org_id="bench", channel=channel, to_recipient=f"+1555{(start + n):07d}", body=BODY)
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


@dataclass(frozen=True)
class Spread:
    """Median and range of one figure over the runs of a bench."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def text(self, fmt: str = ",.0f", unit: str = "") -> str:
        """`median (min-max)`, or the single value when there was one run."""
        median = f"{self.median:{fmt}}{unit}"
        if len(self.values) < 2:
            return median
        return f"{median} ({min(self.values):{fmt}}-{max(self.values):{fmt}})"


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
