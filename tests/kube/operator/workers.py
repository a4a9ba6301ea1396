"""Real sender processes beside the operator: `outbound worker` per ChannelProvider, sandbox providers."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import httpx

from outbound_sender.embedded import free_port
from tests.processes import outbound, stop, worker_env

BULK_SMS = """
INSERT INTO outbound_message (org_id, channel, to_recipient, body)
SELECT 'acme', 'SMS', '+1555123' || lpad(i::text, 4, '0'), 'hello ' || i
  FROM generate_series(1, $1) AS i
"""


def sandbox_config(url: str, **changes: Any) -> None:
    config = httpx.get(url + "/_sandbox/config").json()
    httpx.put(url + "/_sandbox/config", json={**config, **changes}).raise_for_status()


@contextmanager
def worker_process(dsn: str, sandbox_url: str, provider: str, channel: str = "SMS", **settings: str) -> Iterator[None]:
    """`outbound worker` serving the ChannelProvider `provider` through the generic sandbox."""
    env = worker_env(
        dsn,
        sandbox_url,
        outbound_provider_kind="generic",
        outbound_provider_name=provider,
        outbound_worker_channels=channel,
        outbound_worker_poll_interval_ms="200",
        outbound_retry_base_ms="100",
        outbound_retry_max_ms="500",
        outbound_circuit_failure_threshold="1000",  # the pod's own breaker stays out of the way
        outbound_http_port=str(free_port()),
        **settings,
    )
    process = outbound("worker", env=env, stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        stop(process)


async def enqueue_many(db: asyncpg.Connection, count: int) -> None:
    await db.execute(BULK_SMS, count)


async def statuses(db: asyncpg.Connection) -> dict[str, int]:
    rows = await db.fetch("SELECT status, count(*) AS n FROM outbound_message GROUP BY status")
    return {r["status"]: r["n"] for r in rows}


async def calls_by(db: asyncpg.Connection, provider: str) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM outbound_attempt WHERE provider = $1", provider)
    return count
