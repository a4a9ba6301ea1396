"""After the database restarts, the worker LISTENs again: a new message is picked up by its NOTIFY
(not by the poll, set to a minute here), and the worker holds its three connections again."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from outbound_sender.store.db import connect
from outbound_sender.store.gateway import APPLICATION
from tests.integration.faults.postmaster import Postmaster, postmaster
from tests.workers import ScriptedProvider, enqueue_sms, running_worker

POLL_MS = 60_000  # the safety-net poll and the control refresh: far longer than any wait below
CONNECTIONS = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()"
SENT = "SELECT count(*) FROM outbound_message WHERE status = 'SENT'"


async def _value(server: Postmaster, query: str, *args: Any) -> Any:
    conn = await connect(server.dsn)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


async def _until(server: Postmaster, query: str, wanted: int, timeout: float, *args: Any) -> float:
    """Seconds until `query` returns `wanted`."""
    started = time.monotonic()
    async with asyncio.timeout(timeout):
        while await _value(server, query, *args) != wanted:
            await asyncio.sleep(0.05)
    return time.monotonic() - started


async def _send_one(server: Postmaster, sent_before: int) -> float:
    conn = await connect(server.dsn)
    try:
        await enqueue_sms(conn, 1)
    finally:
        await conn.close()
    return await _until(server, SENT, sent_before + 1, 10)


async def test_listen_comes_back_after_restarts_and_notify_wakes_the_worker() -> None:
    async with postmaster() as server:
        worker = running_worker(
            server.dsn,
            ScriptedProvider(),
            poll_interval_ms=POLL_MS,
            control_interval_ms=POLL_MS,
            recovery_interval_ms=500,
        )
        async with worker:
            await _until(server, CONNECTIONS, 3, 15, APPLICATION)
            waits = [await _send_one(server, 0)]
            for restart in ({}, {"down": 1.0}, {"in_recovery": 2.0}):
                await server.restart(**restart)
                await _until(server, CONNECTIONS, 3, 15, APPLICATION)
                waits.append(await _send_one(server, len(waits)))
        print(f"\nNOTIFY to SENT after each restart (s): {[round(w, 2) for w in waits]}")
        assert server.kills == 3
        assert max(waits) < 5  # the poll would take a minute
