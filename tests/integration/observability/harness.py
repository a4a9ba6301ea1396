"""A running sender for observability tests: sandbox provider, worker, gauge refresher and the
metrics endpoint, all real servers on loopback.

`serve_metrics` is the one piece that stands in for the HTTP API's /actuator/prometheus: swap it
for the API app when that is merged.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from outbound_sender import app
from outbound_sender.config import AllSettings, ProviderSettings, RetrySettings
from outbound_sender.domain import Channel, NewMessage
from outbound_sender.embedded import free_port
from outbound_sender.metrics import Metrics
from outbound_sender.observability.exposition import metrics_server
from outbound_sender.observability.refresher import GaugeRefresher
from outbound_sender.store import messages
from outbound_sender.worker.settings import WorkerSettings

OK_SMS = "+15551230100"
PERMANENT_SMS = "+15550000001"  # sandbox rule: INVALID_PHONE_NUMBER
TEMPORARY_SMS = "+15550000002"  # sandbox rule: 503, retried
OK_EMAIL = "dana.ok@example.com"
BOUNCE_EMAIL = "bounce@example.com"  # sandbox rule: INVALID_EMAIL
OK_WHATSAPP = "+15551230200"


def settings_for(sandbox_url: str) -> AllSettings:
    settings = AllSettings()
    settings.provider = ProviderSettings(kind="generic", sandbox_url=sandbox_url, read_timeout_seconds=5)
    settings.worker = WorkerSettings(poll_interval_ms=100, lease_seconds=30, recovery_interval_ms=500)
    settings.retry = RetrySettings(base_ms=100, max_ms=500)
    return settings


@dataclass
class Pod:
    metrics: Metrics
    port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


async def serve_metrics(metrics: Metrics, stop: asyncio.Event) -> tuple[int, asyncio.Task[None]]:
    """Expose the registry at /actuator/prometheus and /metrics on a free loopback port."""
    port = free_port()
    server = metrics_server(metrics.registry, "127.0.0.1", port)
    task = asyncio.create_task(app.serve_until(server, stop))
    await app.wait_started(server)
    return port, task


@contextlib.asynccontextmanager
async def sandbox() -> AsyncIterator[str]:
    stop = asyncio.Event()
    port = free_port()
    server = app.sandbox_server("127.0.0.1", port)
    task = asyncio.create_task(app.serve_until(server, stop))
    await app.wait_started(server)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        await task


@contextlib.asynccontextmanager
async def sender_pod(
    dsn: str, sandbox_url: str, *, worker: bool = True, refresh_seconds: float = 0.2
) -> AsyncIterator[Pod]:
    """One sender process: metrics endpoint + gauge refresher (+ the OutboundJobWorker)."""
    metrics = Metrics()
    stop = asyncio.Event()
    port, served = await serve_metrics(metrics, stop)
    jobs: list[Coroutine[Any, Any, None]] = [GaugeRefresher(dsn, metrics, interval_seconds=refresh_seconds).run(stop)]
    if worker:
        jobs.append(app.build_worker(dsn, settings_for(sandbox_url), metrics).run(stop))
    tasks = [asyncio.create_task(job) for job in jobs]
    try:
        yield Pod(metrics, port)
    finally:
        stop.set()
        await asyncio.gather(*tasks, served)


def wave(correlation: str) -> list[NewMessage]:
    """Traffic through every outcome: successes, a permanent failure, a retried failure that ends
    in the dead-letter queue, an e-mail bounce, WhatsApp."""
    sms = [(OK_SMS, 5), (PERMANENT_SMS, 5), (TEMPORARY_SMS, 2)]
    items = [
        NewMessage("acme", Channel.SMS, to, body="hi", max_attempts=n, correlation_id=correlation) for to, n in sms
    ]
    items += [
        NewMessage("acme", Channel.EMAIL, to, subject="s", body="b", correlation_id=correlation)
        for to in (OK_EMAIL, BOUNCE_EMAIL)
    ]
    items.append(NewMessage("acme", Channel.WHATSAPP, OK_WHATSAPP, template_code="t", correlation_id=correlation))
    return items


async def send(conn: asyncpg.Connection, items: Sequence[NewMessage]) -> list[int]:
    return await messages.enqueue_many(conn, items)


async def wait_all_final(conn: asyncpg.Connection, ids: Sequence[int], timeout: float = 30) -> None:
    for message_id in ids:
        await messages.wait_final(conn, message_id, timeout=timeout)
