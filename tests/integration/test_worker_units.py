"""The worker's units on both gateways: the in-memory fake of the unit tests and PostgreSQL.

The same scenario must end the same way on each, so the unit tests' fake keeps the rules of the
real statements (tests/fake_gateway.py) and each unit is tested against PostgreSQL as well.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Protocol

import asyncpg
import pytest

from outbound_sender.domain import Channel, ProviderControl
from outbound_sender.providers.base import SendResult
from outbound_sender.store.db import connect
from outbound_sender.store.gateway import PgWorkerGateway, WorkerGateway
from outbound_sender.worker import results
from tests.fake_gateway import FakeGateway
from tests.unit.worker.units import build, until
from tests.workers import enqueue_sms, sms, statuses


class Queue(Protocol):
    @property
    def gateway(self) -> WorkerGateway: ...

    async def add(self, count: int, channel: Channel = Channel.SMS) -> None: ...

    async def statuses(self) -> dict[str, int]: ...

    async def expire_leases(self) -> None: ...

    async def set_control(self, row: ProviderControl) -> None: ...


class FakeQueue:
    def __init__(self) -> None:
        self.now = 0.0
        self.gateway = self.fake = FakeGateway(clock=lambda: self.now)

    async def add(self, count: int, channel: Channel = Channel.SMS) -> None:
        self.fake.add(count, channel)

    async def statuses(self) -> dict[str, int]:
        return self.fake.statuses()

    async def expire_leases(self) -> None:
        self.now += 3600

    async def set_control(self, row: ProviderControl) -> None:
        self.fake.control = [row]


class PgQueue:
    def __init__(self, db: asyncpg.Connection, gateway: PgWorkerGateway) -> None:
        self.db, self.gateway = db, gateway

    async def add(self, count: int, channel: Channel = Channel.SMS) -> None:
        if channel is Channel.SMS:
            await enqueue_sms(self.db, count)
            return
        for _ in range(count):
            message = sms(to="a@example.com", subject="s")
            await self.db.execute(
                "INSERT INTO outbound_message (org_id, channel, to_recipient, subject, body)"
                " VALUES ($1, $2, $3, $4, $5)",
                message.org_id, channel.value, message.to_recipient, message.subject, message.body,
            )  # fmt: skip

    async def statuses(self) -> dict[str, int]:
        return await statuses(self.db)

    async def expire_leases(self) -> None:
        await self.db.execute(
            "UPDATE outbound_message SET leased_until = now() - interval '1 second' WHERE status = 'SENDING'"
        )

    async def set_control(self, row: ProviderControl) -> None:
        await self.db.execute("DELETE FROM provider_control")
        await self.db.execute(
            "INSERT INTO provider_control (provider, channel, kind, enabled, batch_size) VALUES ($1, $2, $3, $4, $5)",
            row.provider, row.channel.value, row.kind, row.enabled, row.batch_size,
        )  # fmt: skip


@pytest.fixture(params=["fake", "postgresql"])
def dsn(request: pytest.FixtureRequest) -> str | None:
    """None for the fake; a fresh database for PostgreSQL."""
    return None if request.param == "fake" else str(request.getfixturevalue("db_dsn"))


@pytest.fixture
async def queue(dsn: str | None) -> AsyncIterator[Queue]:
    if dsn is None:
        yield FakeQueue()
        return
    db = await connect(dsn)
    gateway = await PgWorkerGateway.open(dsn)
    try:
        yield PgQueue(db, gateway)
    finally:
        await gateway.close()
        await db.close()


async def test_the_claimer_claims_a_batch_of_its_channels(queue: Queue) -> None:
    await queue.add(3)
    await queue.add(2, Channel.EMAIL)
    units = build(queue.gateway, channels=[Channel.SMS], batch_size=2)
    assert await units.claimer.claim_once(10) == (2, 2)
    assert await queue.statuses() == {"SENDING": 2, "QUEUED": 3}


async def test_the_completer_applies_a_batch_fenced_by_leases(queue: Queue) -> None:
    await queue.add(3)
    units = build(queue.gateway)
    claimed = await queue.gateway.claim([Channel.SMS], 3, "w", 60)
    taken_over = replace(claimed[2], lease_id=str(uuid.uuid4()))  # recovered and claimed again since
    for message in [*claimed[:2], taken_over]:
        units.completer.record(results.success(message, "p", SendResult(f"pm-{message.id}", 201), 1))
    units.completer.finish()
    await units.completer.run()
    assert await queue.statuses() == {"SENT": 2, "SENDING": 1}
    assert units.metrics.superseded.labels("SMS", "SENT")._value.get() == 1


async def test_the_rescuer_puts_expired_leases_back(queue: Queue) -> None:
    await queue.add(2)
    units = build(queue.gateway)
    await queue.gateway.claim([Channel.SMS], 2, "dead-worker", 60)
    assert await units.rescuer.recover_once() == 0
    await queue.expire_leases()
    assert await units.rescuer.recover_once() == 2
    assert await queue.statuses() == {"QUEUED": 2}


async def test_the_follower_reads_the_control_rows(queue: Queue) -> None:
    units = build(queue.gateway, channels=[Channel.SMS])
    await queue.set_control(ProviderControl("scripted", Channel.SMS, "sandbox", enabled=False))
    await units.follower.refresh()
    assert units.choice.active() == frozenset()
    await queue.set_control(ProviderControl("scripted", Channel.SMS, "sandbox", batch_size=4))
    stop = asyncio.Event()
    task = asyncio.create_task(units.follower.run(stop))
    await until(lambda: units.choice.active() == {Channel.SMS})
    stop.set()
    await task
    assert units.choice.claim_size(frozenset({Channel.SMS})) == 4
