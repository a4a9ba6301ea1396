"""Where the servers are: DATABASE_URL / REDIS_URL, or embedded servers in the state folder.

An embedded server started by one command (say `outbound run`) is reused by the next one (say
`outbound enqueue` in another terminal) while it runs; otherwise the command starts it and stops
it when done.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from outbound_sender.config import Settings
from outbound_sender.embedded import EmbeddedPostgres, EmbeddedRedis


def _running_port(data_dir: Path) -> int | None:
    pid_file = data_dir / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
    except OSError:
        return None
    if len(lines) < 8 or lines[7].strip() != "ready":
        return None
    import os

    try:
        os.kill(int(lines[0]), 0)
    except (OSError, ValueError):
        return None
    return int(lines[3])


@contextlib.contextmanager
def database(settings: Settings, *, say: bool = True) -> Iterator[str]:
    """Yield a DSN: DATABASE_URL, a running embedded server, or one started for this block."""
    if settings.database_url:
        yield settings.database_url
        return
    data_dir = (settings.outbound_state_dir / "postgres").resolve()
    port = _running_port(data_dir)
    if port is not None:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        return
    server = EmbeddedPostgres(data_dir).start()
    if say:
        print(f"embedded PostgreSQL 18 started: {server.dsn()} (data in {data_dir})", flush=True)
    try:
        yield server.dsn()
    finally:
        server.stop()


@contextlib.contextmanager
def redis(settings: Settings, *, say: bool = True) -> Iterator[str]:
    """Yield a Redis URL: REDIS_URL, or an embedded redis-server for this block."""
    if settings.redis_url:
        yield settings.redis_url
        return
    server = EmbeddedRedis(settings.outbound_state_dir.resolve() / "redis").start()
    if say:
        print(f"embedded Redis started: {server.url}", flush=True)
    try:
        yield server.url
    finally:
        server.stop()
