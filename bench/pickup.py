"""B3 taken apart: where the time from enqueue to the provider call goes.

B3 measures enqueue (the API's INSERT, committed) -> provider call at a steady rate, the worker idle
between messages and woken by NOTIFY. The worker here is the product's, unchanged; only its store
gateway is observed (a subclass that timestamps the NOTIFY callback and each claim round trip), so
each message's latency splits into consecutive parts:

    notify    enqueue called -> the worker's LISTEN callback ran (INSERT, trigger, commit, NOTIFY
              delivery and one event-loop hop; the raw LISTEN/NOTIFY floor is this without the INSERT)
    wake      callback -> claim statement sent (the claimer's wake-up and its checks)
    claim     the claim round trip (claim_batch: FOR UPDATE SKIP LOCKED, lease, attempt count)
    dispatch  claim returned -> provider.send called (the sender's task start, gates, circuit)

`commit` (enqueue called -> the producer saw its commit) is reported beside them; it overlaps
`notify`. A message whose claim had started before its NOTIFY arrived (a poll or a previous wake
found it) has no wake part and is counted as `early`.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.common import Latencies
from outbound_sender.domain import Channel, NewMessage, OutboundMessage
from outbound_sender.providers.base import SendResult
from outbound_sender.providers.null import NullProvider
from outbound_sender.store.db import connect
from outbound_sender.store.gateway import Callback, PgSubscription, PgWorkerGateway
from outbound_sender.store.messages import enqueue
from outbound_sender.worker.dispatch import Dispatcher
from outbound_sender.worker.service import OutboundJobWorker
from outbound_sender.worker.settings import WorkerSettings

PARTS = ("commit", "notify", "wake", "claim", "dispatch")


@dataclass
class Marks:
    """perf_counter stamps, keyed by the enqueue stamp each message carries in its body."""

    committed: dict[str, float] = field(default_factory=dict)
    notified: list[float] = field(default_factory=list)  # every NOTIFY callback, in order
    claimed: dict[str, tuple[float, float]] = field(default_factory=dict)  # claim sent, claim returned
    called: dict[str, float] = field(default_factory=dict)


class _ObservedGateway(PgWorkerGateway):
    marks: Marks

    async def claim(self, *args: Any, **kwargs: Any) -> list[OutboundMessage]:
        sent = time.perf_counter()
        messages = await super().claim(*args, **kwargs)
        returned = time.perf_counter()
        for message in messages:
            self.marks.claimed[message.body or ""] = (sent, returned)
        return messages

    async def subscribe(
        self, on_ready: Callable[[str], None], on_control: Callback, on_lost: Callback
    ) -> PgSubscription:
        def ready(channel: str) -> None:
            self.marks.notified.append(time.perf_counter())
            on_ready(channel)

        return await super().subscribe(ready, on_control, on_lost)


class _ObservedWorker(OutboundJobWorker):
    def __init__(self, dsn: str, marks: Marks) -> None:
        super().__init__(dsn, Dispatcher([_Stamped(marks)]), settings=WorkerSettings())
        self.gateway_type = type("ObservedGateway", (_ObservedGateway,), {"marks": marks})


class _Stamped(NullProvider):
    def __init__(self, marks: Marks) -> None:
        super().__init__()
        self.marks = marks

    async def send(self, message: OutboundMessage) -> SendResult:
        self.marks.called[message.body or ""] = time.perf_counter()
        return await super().send(message)


def split(marks: Marks) -> dict[str, float]:
    """p50/p95/max of the total and p50/p95 of each part, over the messages that reached the provider."""
    total, early = Latencies(), 0
    parts = {name: Latencies() for name in PARTS}
    for stamp, called in marks.called.items():
        start = float(stamp)
        claim_sent, claim_returned = marks.claimed[stamp]
        total.add(called - start)
        parts["commit"].add(marks.committed[stamp] - start)
        parts["claim"].add(claim_returned - claim_sent)
        parts["dispatch"].add(called - claim_returned)
        index = bisect.bisect_left(marks.notified, start)
        notified = marks.notified[index] if index < len(marks.notified) else float("inf")
        if notified <= claim_sent:
            parts["notify"].add(notified - start)
            parts["wake"].add(claim_sent - notified)
        else:
            early += 1
    figures = total.summary()
    for name, latencies in parts.items():
        summary = latencies.summary()
        figures |= {f"{name}_p50_ms": summary["p50_ms"], f"{name}_p95_ms": summary["p95_ms"]}
    return figures | {"early": float(early), "messages": float(len(marks.called))}


async def b3_latency(dsn: str, rate: float, seconds: float) -> dict[str, float]:
    """Enqueue (commit) -> provider call latency at `rate` msgs/s, and its parts; NOTIFY wakes the worker."""
    marks = Marks()
    worker = _ObservedWorker(dsn, marks)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await asyncio.sleep(1.0)
    producer = await connect(dsn)
    try:
        for _ in range(int(rate * seconds)):
            stamp = repr(time.perf_counter())
            await enqueue(
                producer, NewMessage(org_id="bench", channel=Channel.SMS, to_recipient="+15550001111", body=stamp)
            )
            marks.committed[stamp] = time.perf_counter()
            await asyncio.sleep(1 / rate)
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        await task
        await producer.close()
    return split(marks)


async def commit_floor(dsn: str, rate: float, seconds: float) -> dict[str, float]:
    """The round trip of the smallest durable write (a one-row INSERT, committed and flushed to the
    WAL) at `rate`/s: B3's chain holds two of them (the enqueue and the claim), the raw
    LISTEN/NOTIFY floor none."""
    observed = Latencies()
    conn = await connect(dsn)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS bench_commit_floor (id bigserial PRIMARY KEY)")
        for _ in range(int(rate * seconds)):
            started = time.perf_counter()
            await conn.execute("INSERT INTO bench_commit_floor DEFAULT VALUES")
            observed.add(time.perf_counter() - started)
            await asyncio.sleep(1 / rate)
    finally:
        await conn.execute("DROP TABLE IF EXISTS bench_commit_floor")
        await conn.close()
    return observed.summary()
