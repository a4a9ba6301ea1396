"""Helpers to run real OutboundJobWorkers in tests, with a scripted in-process provider."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg

from outbound_sender.domain import Channel, NewMessage, OutboundMessage
from outbound_sender.metrics import Metrics
from outbound_sender.providers.base import SendResult
from outbound_sender.store.messages import enqueue
from outbound_sender.worker.dispatch import Dispatcher
from outbound_sender.worker.retry import RetryPolicy
from outbound_sender.worker.service import OutboundJobWorker
from outbound_sender.worker.settings import ChannelSwitches, WorkerSettings

Behaviour = Callable[[OutboundMessage, int], SendResult | Exception]


def always_ok(message: OutboundMessage, _call: int) -> SendResult:
    return SendResult(f"ok-{message.id}-{message.attempt_no}", 201)


class ScriptedProvider:
    """Answers by a function of (message, n-th call for this message); records every call."""

    def __init__(self, behaviour: Behaviour = always_ok, *, latency: float = 0.0, name: str = "scripted") -> None:
        self.behaviour = behaviour
        self.latency = latency
        self.name = name
        self.channels = frozenset(Channel)
        self.calls: Counter[int] = Counter()
        self.order: list[int] = []

    async def send(self, message: OutboundMessage) -> SendResult:
        self.calls[message.id] += 1
        self.order.append(message.id)
        if self.latency:
            await asyncio.sleep(self.latency)
        answer = self.behaviour(message, self.calls[message.id])
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def aclose(self) -> None:
        return None


class PeakCounting(ScriptedProvider):
    """A scripted provider that keeps the largest number of its calls in progress at once (`peak`)."""

    def __init__(self, latency: float) -> None:
        super().__init__(latency=latency)
        self.now = self.peak = 0

    async def send(self, message: OutboundMessage) -> SendResult:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            return await super().send(message)
        finally:
            self.now -= 1


FAST_RETRY = RetryPolicy(base_seconds=0.05, max_seconds=0.2, max_hint_seconds=5)


def worker_settings(**overrides: Any) -> WorkerSettings:
    values: dict[str, Any] = {"poll_interval_ms": 200, "recovery_interval_ms": 100, "lease_seconds": 30}
    values.update(overrides)
    return WorkerSettings(**values)


@contextlib.asynccontextmanager
async def running_worker(
    dsn: str,
    provider: ScriptedProvider,
    *,
    retry: RetryPolicy = FAST_RETRY,
    switches: ChannelSwitches | None = None,
    redis_url: str | None = None,
    providers: list[Any] | None = None,
    **overrides: Any,
) -> AsyncIterator[OutboundJobWorker]:
    stop = asyncio.Event()
    worker = OutboundJobWorker(
        dsn,
        Dispatcher(providers or [provider]),
        settings=worker_settings(**overrides),
        switches=switches,
        retry=retry,
        metrics=Metrics(),
        redis_url=redis_url,
    )
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def sms(to: str = "+15551230000", **fields: Any) -> NewMessage:
    return NewMessage(org_id=fields.pop("org_id", "org1"), channel=Channel.SMS, to_recipient=to, body="hi", **fields)


async def enqueue_sms(db: asyncpg.Connection, count: int = 1, **fields: Any) -> list[int]:
    return [await enqueue(db, sms(**fields)) for _ in range(count)]


async def wait_for(db: asyncpg.Connection, query: str, *args: Any, timeout: float = 15.0) -> Any:
    """Poll `query` until it returns a truthy value."""
    async with asyncio.timeout(timeout):
        while True:
            value = await db.fetchval(query, *args)
            if value:
                return value
            await asyncio.sleep(0.05)


async def statuses(db: asyncpg.Connection) -> dict[str, int]:
    rows = await db.fetch("SELECT status, count(*) AS n FROM outbound_message GROUP BY status")
    return {r["status"]: r["n"] for r in rows}


async def one(db: asyncpg.Connection, query: str, *args: Any) -> asyncpg.Record:
    """fetchrow that insists on a row."""
    row = await db.fetchrow(query, *args)
    assert row is not None, f"no row for {query!r} {args!r}"
    return row
