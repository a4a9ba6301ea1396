"""The worker's second claim loop on PostgreSQL: under a backlog the helper claims on the LISTEN
connection, so two claims are on their way at once within the worker's 3 connections; that
connection still wakes the worker; and killing it mid-drain loses and duplicates nothing."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from outbound_sender.domain import OutboundMessage
from outbound_sender.metrics import Metrics
from outbound_sender.store.db import connect
from outbound_sender.store.gateway import APPLICATION, Callback, PgSubscription, PgWorkerGateway
from outbound_sender.worker.dispatch import Dispatcher
from outbound_sender.worker.listener import LISTENER_CHECK_SECONDS
from outbound_sender.worker.service import OutboundJobWorker
from tests.workers import ScriptedProvider, statuses, wait_for, worker_settings

COUNT = 3_000
LONG = 20_000  # drained over seconds: a backlog is left after each kill
POLL_MS = 60_000  # no poll during the test: every wake-up is a NOTIFY or a full claim
CONNECTIONS = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()"
LOAD = """
INSERT INTO outbound_message (org_id, channel, to_recipient, body)
SELECT 'org1', 'SMS', '+1555' || lpad(n::text, 7, '0'), 'hi' FROM generate_series(1, $1) AS n
"""


class Watched(PgWorkerGateway):
    """The worker's gateway, counting the claims made on the LISTEN connection."""

    on_listen: Counter[str] = Counter()
    listening: list[PgSubscription] = []  # every LISTEN connection, in order
    claimed_on: set[int] = set()  # the index in `listening` of each one that carried a claim

    async def claim(self, *args: Any, **kwargs: Any) -> list[OutboundMessage]:
        messages = await super().claim(*args, **kwargs)
        on = kwargs.get("on")  # the worker names it
        self.on_listen["pool" if on is None else "listen"] += 1
        if on is not None:
            self.claimed_on.add(next(n for n, s in enumerate(self.listening) if s is on))
        return messages

    async def subscribe(
        self, on_ready: Callable[[str], None], on_control: Callback, on_lost: Callback
    ) -> PgSubscription:
        subscription = await super().subscribe(on_ready, on_control, on_lost)
        self.listening.append(subscription)
        return subscription


@asynccontextmanager
async def worker(dsn: str, provider: ScriptedProvider) -> AsyncIterator[type[Watched]]:
    settings = worker_settings(
        batch_size=10, max_in_flight=50, poll_interval_ms=POLL_MS, control_interval_ms=POLL_MS,
        recovery_interval_ms=200, lease_seconds=5,
    )  # fmt: skip
    gateway = type("WatchedGateway", (Watched,), {"on_listen": Counter(), "listening": [], "claimed_on": set()})
    subject = OutboundJobWorker(dsn, Dispatcher([provider]), settings=settings, metrics=Metrics())
    subject.gateway_type = gateway
    stop = asyncio.Event()
    task = asyncio.create_task(subject.run(stop))
    try:
        await asyncio.wait_for(subject.started.wait(), 15)
        yield gateway
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def peak_connections(dsn: str, done: asyncio.Event) -> int:
    db = await connect(dsn)
    try:
        peak = 0
        while not done.is_set():
            peak = max(peak, int(await db.fetchval(CONNECTIONS, APPLICATION)))
            await asyncio.sleep(0.005)
        return peak
    finally:
        await db.close()


async def test_under_a_backlog_the_helper_claims_on_the_listen_connection_within_three_connections(
    db: asyncpg.Connection, db_dsn: str
) -> None:
    provider = ScriptedProvider()
    async with worker(db_dsn, provider) as gateway:
        done = asyncio.Event()
        watching = asyncio.create_task(peak_connections(db_dsn, done))
        await db.execute(LOAD, COUNT)  # the insert's NOTIFY wakes the worker
        await wait_for(db, "SELECT count(*) = $1 FROM outbound_message WHERE status = 'SENT'", COUNT, timeout=60)
        done.set()
        peak = await watching
        claims = dict(gateway.on_listen)
        # The LISTEN connection ran claims and still delivers NOTIFY: a new message is picked up
        # at once although the worker polls once a minute.
        await db.execute(LOAD, 1)
        await wait_for(db, "SELECT count(*) = $1 FROM outbound_message WHERE status = 'SENT'", COUNT + 1, timeout=10)
    print(f"\nclaims on the pool / on the LISTEN connection: {claims}; peak connections {peak}")
    assert claims["listen"] > 0.2 * claims["pool"]
    assert peak <= 3
    assert len(provider.calls) == COUNT + 1
    assert set(provider.calls.values()) == {1}


async def test_killing_the_listen_connection_mid_drain_loses_and_duplicates_nothing(
    db: asyncpg.Connection, db_dsn: str
) -> None:
    provider = ScriptedProvider(latency=0.002)
    async with worker(db_dsn, provider) as gateway:
        await db.execute(LOAD, LONG)
        killed = []
        for n, fraction in enumerate((0.2, 0.5)):
            await wait_for(db, "SELECT count(*) >= $1 FROM outbound_message WHERE status = 'SENT'", fraction * LONG)
            pid = gateway.listening[n].conn.get_server_pid()
            assert await db.fetchval("SELECT pg_terminate_backend($1)", pid)
            killed.append(pid)
            async with asyncio.timeout(15):  # the listener reconnects and the helper claims on the new connection
                while n + 1 not in gateway.claimed_on:
                    await asyncio.sleep(0.01)
        await wait_for(db, "SELECT count(*) = $1 FROM outbound_message WHERE status = 'SENT'", LONG, timeout=60)
        assert len(gateway.listening) == 3  # one new connection per kill, no reconnect storm
    lost = LONG - len(provider.calls)
    duplicated = sum(n - 1 for n in provider.calls.values())
    print(f"\nLISTEN backends killed {killed}: lost {lost}, duplicated {duplicated}, {dict(gateway.on_listen)}")
    assert (lost, duplicated) == (0, 0)
    assert await statuses(db) == {"SENT": LONG}
    assert await db.fetchval("SELECT count(*) FROM outbound_attempt") == LONG


async def test_a_claim_waiting_on_a_lock_keeps_its_listen_connection(db: asyncpg.Connection, db_dsn: str) -> None:
    """The listener checks its connection every 5 s; a claim on it that waits on a table lock longer
    than that must not get the connection ended under it (its claim could commit after the end,
    leaving its messages leased to nobody until the lease expired)."""
    provider = ScriptedProvider(latency=0.002)
    async with worker(db_dsn, provider) as gateway:
        await db.execute(LOAD, LONG)
        await wait_for(db, "SELECT count(*) >= $1 FROM outbound_message WHERE status = 'SENT'", LONG // 5)
        pid = gateway.listening[0].conn.get_server_pid()
        async with db.transaction():
            await db.execute("LOCK TABLE outbound_message IN ACCESS EXCLUSIVE MODE")
            waiting = "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1"
            locker = await connect(db_dsn)
            try:
                await wait_for(locker, waiting, pid)  # the helper's claim waits on the lock
            finally:
                await locker.close()
            await asyncio.sleep(2 * LISTENER_CHECK_SECONDS + 1.5)  # a check, and its own 5 s bound
        await wait_for(db, "SELECT count(*) = $1 FROM outbound_message WHERE status = 'SENT'", LONG, timeout=60)
        assert len(gateway.listening) == 1
    assert len(provider.calls) == LONG
    assert set(provider.calls.values()) == {1}
