"""`outbound callbacks` as a process: it delivers, serves its metrics, stops on SIGTERM, and exits
non-zero on an error that is not a database outage."""

from __future__ import annotations

import asyncio
import subprocess

import asyncpg
import httpx

from outbound_sender.embedded import free_port
from tests.integration.api.conftest import ORG
from tests.integration.callbacks.receiver import receiving, signed_by
from tests.processes import outbound, stop
from tests.workers import ScriptedProvider, enqueue_sms, running_worker


def _env(dsn: str, port: int) -> dict[str, str]:
    return {
        "DATABASE_URL": dsn,
        "OUTBOUND_HTTP_HOST": "127.0.0.1",
        "OUTBOUND_HTTP_PORT": str(port),
        "OUTBOUND_CALLBACKS_ALLOW_PRIVATE": "true",
        "OUTBOUND_CALLBACKS_POLL_INTERVAL_MS": "100",
    }


async def _metric(url: str, name: str, timeout: float = 60) -> str:
    async with httpx.AsyncClient() as client, asyncio.timeout(timeout):
        while True:
            try:
                text = (await client.get(url)).text
                lines = [line for line in text.splitlines() if line.startswith(name)]
                if lines and not lines[0].endswith(" 0.0"):
                    return lines[0]
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)


async def test_the_command_delivers_and_serves_its_metrics(db: asyncpg.Connection, db_dsn: str) -> None:
    port = free_port()
    async with receiving() as receiver:
        await db.execute(
            "INSERT INTO outbound_callback_endpoint (org_id, url, secret) VALUES ($1, $2, 'whsec_cmd')",
            ORG,
            receiver.url,
        )
        process = outbound("callbacks", env=_env(db_dsn, port), stdout=subprocess.DEVNULL)
        try:
            await enqueue_sms(db, org_id=ORG)
            async with running_worker(db_dsn, ScriptedProvider()):
                [request] = await receiver.wait_for(1)
            line = await _metric(f"http://127.0.0.1:{port}/metrics", 'outbound_callback_delivered_total{status="SENT"}')
            assert line.endswith(" 1.0")
        finally:
            code = await asyncio.to_thread(stop, process)
    assert signed_by(request, "whsec_cmd")
    assert code == 0


async def test_an_error_that_is_not_an_outage_brings_the_command_down(db: asyncpg.Connection, db_dsn: str) -> None:
    process = outbound("callbacks", env=_env(db_dsn, free_port()), stderr=subprocess.PIPE)
    try:
        await db.execute("DROP TABLE outbound_callback_outbox")  # a bug's worth: undefined table (42P01)
        code = await asyncio.to_thread(process.wait, 60)
    finally:
        await asyncio.to_thread(stop, process)
    assert process.stderr is not None
    assert code == 1
    assert b"callback dispatcher failed" in process.stderr.read()
