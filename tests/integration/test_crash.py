"""Chaos: SIGKILL real worker processes mid-batch. Nothing is lost; duplicates are bounded and counted.

Each message has its own recipient, so the sandbox's per-recipient accept count tells how many
times a message really reached the provider.
"""

from __future__ import annotations

import asyncio
import signal

import asyncpg
import httpx

from outbound_sender.domain import Channel, NewMessage
from outbound_sender.store.messages import enqueue_many
from tests.processes import outbound, sandbox_process, stop, worker_env
from tests.workers import statuses, wait_for

MESSAGES = 400
KILLS = 3


def recipient(n: int) -> str:
    return f"+1555300{n:04d}"


async def test_sigkilled_workers_lose_nothing(db: asyncpg.Connection, db_dsn: str) -> None:
    batch = [NewMessage(org_id="o", channel=Channel.SMS, to_recipient=recipient(n), body="x") for n in range(MESSAGES)]
    await enqueue_many(db, batch)
    with sandbox_process(latency_ms=150) as sandbox:
        env = worker_env(
            db_dsn,
            sandbox,
            outbound_worker_batch_size="20",
            outbound_worker_max_in_flight="40",
            outbound_worker_lease_seconds="3",
            outbound_worker_recovery_interval_ms="200",
            outbound_provider_connect_timeout_seconds="0.5",
            outbound_provider_read_timeout_seconds="2",
        )
        killed_in_flight = 0
        for _ in range(KILLS):
            done_before = await _done(db)
            victim = outbound("worker", env=env)
            await wait_for(db, "SELECT count(*) > $1 FROM outbound_message WHERE status = 'SENT'", done_before + 30)
            killed_in_flight += await db.fetchval("SELECT count(*) FROM outbound_message WHERE status = 'SENDING'")
            stop(victim, signal.SIGKILL)
        survivor = outbound("worker", env=env)
        try:
            await wait_for(db, "SELECT count(*) = $1 FROM outbound_message WHERE status = 'SENT'", MESSAGES, timeout=90)
        finally:
            assert stop(survivor) == 0
        stats = await asyncio.to_thread(httpx.get, sandbox + "/_sandbox/stats")
        accepted = stats.json()["recipients"]["accepted"]
    duplicates = sum(count - 1 for count in accepted.values())
    recovered = await db.fetchval("SELECT count(*) FROM outbound_attempt WHERE error_code = 'LEASE_EXPIRED'")
    print(f"\nchaos: messages={MESSAGES} kills={KILLS} lost=0 duplicates={duplicates} recovered={recovered}")
    assert await statuses(db) == {"SENT": MESSAGES}
    assert set(accepted) == {recipient(n) for n in range(MESSAGES)}
    assert duplicates <= killed_in_flight
    assert recovered >= 1


async def _done(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT count(*) FROM outbound_message WHERE status = 'SENT'"))


async def test_sigterm_on_a_worker_process_drains_cleanly(db: asyncpg.Connection, db_dsn: str) -> None:
    batch = [NewMessage(org_id="o", channel=Channel.SMS, to_recipient=recipient(n), body="x") for n in range(60)]
    await enqueue_many(db, batch)
    with sandbox_process(latency_ms=300) as sandbox:
        worker = outbound("worker", env=worker_env(db_dsn, sandbox, outbound_worker_batch_size="20"))
        await wait_for(db, "SELECT count(*) > 0 FROM outbound_message WHERE status = 'SENDING'")
        assert stop(worker) == 0
    counts = await statuses(db)
    assert "SENDING" not in counts
    assert counts.get("SENT", 0) >= 20
