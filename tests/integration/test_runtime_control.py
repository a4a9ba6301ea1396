"""Runtime control rows reach a running worker without a restart (what the operator writes)."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import asyncpg
import pytest

from outbound_sender.metrics import Metrics
from outbound_sender.worker.dispatch import Dispatcher
from outbound_sender.worker.service import OutboundJobWorker
from outbound_sender.worker.settings import WorkerSettings
from tests.workers import FAST_RETRY, ScriptedProvider, enqueue_sms, statuses, wait_for

CONTROL = """INSERT INTO provider_control (provider, channel, kind, enabled, priority, circuit_state, batch_size)
              VALUES ($1, 'SMS', 'sandbox', $2, $3, $4, $5)"""


async def _run(dsn: str, providers: list[ScriptedProvider], stop: asyncio.Event) -> OutboundJobWorker:
    settings = WorkerSettings(poll_interval_ms=60_000, control_interval_ms=60_000, recovery_interval_ms=500)
    worker = OutboundJobWorker(dsn, Dispatcher(providers), settings=settings, retry=FAST_RETRY, metrics=Metrics())
    asyncio.get_running_loop().create_task(worker.run(stop))
    await asyncio.sleep(0.3)
    return worker


async def test_a_disabled_provider_leaves_messages_queued_until_enabled(db: asyncpg.Connection, db_dsn: str) -> None:
    await db.execute(CONTROL, "primary", False, 10, "CLOSED", 10)
    ids = await enqueue_sms(db, 5)
    stop = asyncio.Event()
    provider = ScriptedProvider(name="primary")
    await _run(db_dsn, [provider], stop)
    try:
        await asyncio.sleep(1.0)
        assert await statuses(db) == {"QUEUED": 5}
        assert not provider.calls
        await db.execute("UPDATE provider_control SET enabled = true")  # NOTIFY wakes the worker
        await wait_for(db, "SELECT count(*) = 5 FROM outbound_message WHERE status = 'SENT'", timeout=5)
    finally:
        stop.set()
    assert set(provider.calls) == set(ids)


async def test_an_open_circuit_fails_over_to_the_backup_within_a_second(db: asyncpg.Connection, db_dsn: str) -> None:
    await db.execute(CONTROL, "primary", True, 10, "CLOSED", 5)
    await db.execute(CONTROL, "backup", True, 20, "CLOSED", 5)
    primary, backup = ScriptedProvider(name="primary", latency=0.05), ScriptedProvider(name="backup", latency=0.05)
    stop = asyncio.Event()
    await _run(db_dsn, [primary, backup], stop)
    try:
        await enqueue_sms(db, 20)
        await wait_for(db, "SELECT count(*) >= 5 FROM outbound_message WHERE status = 'SENT'")
        assert not backup.calls
        opened = time.monotonic()
        await db.execute("UPDATE provider_control SET circuit_state = 'OPEN' WHERE provider = 'primary'")
        await asyncio.sleep(1.0)
        calls_then = sum(primary.calls.values())
        ids = await enqueue_sms(db, 20)
        await wait_for(db, "SELECT count(*) = 40 FROM outbound_message WHERE status = 'SENT'", timeout=10)
    finally:
        stop.set()
    assert sum(primary.calls.values()) == calls_then, "the primary kept sending after its circuit opened"
    assert set(ids) <= set(backup.calls)
    assert time.monotonic() - opened < 15


async def test_the_batch_size_comes_from_the_control_row(
    db: asyncpg.Connection, db_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    await db.execute(CONTROL, "primary", True, 10, "CLOSED", 3)
    await enqueue_sms(db, 9)
    stop = asyncio.Event()
    with caplog.at_level(logging.INFO, logger="OutboundJobWorker"):
        await _run(db_dsn, [ScriptedProvider(name="primary", latency=0.2)], stop)
        try:
            await wait_for(db, "SELECT count(*) = 9 FROM outbound_message WHERE status = 'SENT'")
        finally:
            stop.set()
    sizes = [int(m[1]) for r in caplog.records if (m := re.search(r"Processing (\d+) pending", r.getMessage()))]
    assert sizes == [3, 3, 3]  # the worker's own default is 10
