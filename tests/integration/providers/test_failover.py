"""Failover between two real providers of one channel, end to end: PostgreSQL -> OutboundJobWorker ->
the providers' clients and sandboxes over HTTP -> signed receipts -> the webhook router -> PostgreSQL.

    SMS     Twilio (priority 10) backed up by Vonage (20)
    EMAIL   SendGrid (priority 10) backed up by Amazon SES (20): SigV4-signed requests checked by
            the sandbox, SES events through SNS (RSA-signed, after the subscription handshake)

Both providers have a provider_control row on the channel, as the operator writes them for two
ChannelProviders. Whether the first fails (500s: this pod's circuit opens) or is switched off
fleet-wide (the runbook's ForceOpen), the backup sends; every message is sent and delivered once:
none lost, none sent twice."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from outbound_sender.domain import Channel, CircuitState, NewMessage
from outbound_sender.metrics import Metrics
from outbound_sender.providers.base import Provider
from outbound_sender.providers.sendgrid import SendGridProvider
from outbound_sender.providers.ses import SesProvider
from outbound_sender.providers.twilio import TwilioProvider
from outbound_sender.providers.vonage import VonageProvider
from outbound_sender.sandboxes import sendgrid as sendgrid_sandbox
from outbound_sender.sandboxes import ses as ses_sandbox
from outbound_sender.sandboxes import twilio as twilio_sandbox
from outbound_sender.sandboxes import vonage as vonage_sandbox
from outbound_sender.sandboxes.base import Rule, SandboxApp
from outbound_sender.store import messages
from outbound_sender.worker.circuit import BreakerConfig
from outbound_sender.worker.dispatch import Dispatcher
from outbound_sender.worker.retry import RetryPolicy
from outbound_sender.worker.service import OutboundJobWorker
from outbound_sender.worker.settings import WorkerSettings
from tests.integration.providers.conftest import Webhooks, http_client, point_webhooks, serve
from tests.workers import wait_for

CONTROL = """INSERT INTO provider_control (provider, channel, kind, priority, circuit_mode, circuit_state)
              VALUES ($1, $2, $1, $3, 'Auto', 'CLOSED')"""
MESSAGES = 30
IN_FLIGHT = 5  # sends at once: those already on their way when the circuit opens still reach the first
THRESHOLD = 3


@dataclass(frozen=True)
class Pair:
    """A channel's first provider and its backup."""

    channel: Channel
    first: str
    backup: str
    recipient: str

    def apps(self) -> tuple[SandboxApp, SandboxApp]:
        if self.channel is Channel.SMS:
            return twilio_sandbox.TwilioSandbox(), vonage_sandbox.VonageSandbox()
        return sendgrid_sandbox.SendGridSandbox(), ses_sandbox.SesSandbox()

    def providers(self, first_url: str, backup_url: str, webhooks: Webhooks) -> list[Provider]:
        if self.channel is Channel.SMS:
            return [
                TwilioProvider(http_client(), twilio_sandbox.account(first_url), callback_base=webhooks.url),
                VonageProvider(http_client(), vonage_sandbox.account(backup_url), callback_base=webhooks.url),
            ]
        return [
            SendGridProvider(http_client(), sendgrid_sandbox.account(first_url)),
            SesProvider(http_client(), ses_sandbox.account(backup_url)),
        ]


PAIRS = [
    Pair(Channel.SMS, "twilio", "vonage", "+15557654321"),
    Pair(Channel.EMAIL, "sendgrid", "ses", "ann@example.com"),
]


@pytest.fixture(params=PAIRS, ids=[p.channel.value for p in PAIRS])
def pair(request: pytest.FixtureRequest) -> Pair:
    return request.param  # type: ignore[no-any-return]


@dataclass
class Served:
    """Both sandboxes, served, and the real clients pointed at them."""

    first: SandboxApp
    backup: SandboxApp
    providers: list[Provider]


@contextlib.asynccontextmanager
async def _served(pair: Pair, webhooks: Webhooks) -> AsyncIterator[Served]:
    first_app, backup_app = pair.apps()
    for app in (first_app, backup_app):
        app.config.rules = []
        point_webhooks(app, webhooks.url)
    async with serve(first_app) as first_url, serve(backup_app) as backup_url:
        yield Served(first_app, backup_app, pair.providers(first_url, backup_url, webhooks))
        await first_app.webhooks.drain(timeout=20)
        await backup_app.webhooks.drain(timeout=20)


@contextlib.asynccontextmanager
async def _worker(dsn: str, dispatcher: Dispatcher, metrics: Metrics) -> AsyncIterator[OutboundJobWorker]:
    settings = WorkerSettings.model_validate(
        {
            "poll_interval_ms": 100,
            "control_interval_ms": 200,
            "recovery_interval_ms": 500,
            "lease_seconds": 30,
            "batch_size": IN_FLIGHT,
            "max_in_flight": IN_FLIGHT,
        }
    )
    retry = RetryPolicy(base_seconds=0.05, max_seconds=0.2)
    running = OutboundJobWorker(dsn, dispatcher, settings=settings, retry=retry, metrics=metrics)
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    try:
        yield running
    finally:
        stop.set()
        await task


async def _enqueue(db: asyncpg.Connection, pair: Pair, count: int) -> list[int]:
    new = NewMessage("org", pair.channel, pair.recipient, body="failover", subject="hi", max_attempts=5)
    return [await messages.enqueue(db, new) for _ in range(count)]


async def _wait_final(db: asyncpg.Connection, ids: list[int]) -> list[asyncpg.Record]:
    return [await messages.wait_final(db, message_id, timeout=60) for message_id in ids]


async def _lost_and_duplicated(db: asyncpg.Connection, ids: list[int]) -> tuple[int, int]:
    """Lost: not SENT, or never delivered. Duplicated: delivered under more than one provider id
    (each accepted send gets its own id, so two ids for one message mean it went out twice)."""
    sent = await db.fetchval(
        "SELECT count(*) FROM outbound_message"
        " WHERE id = ANY($1) AND status = 'SENT' AND delivery_status = 'DELIVERED'",
        ids,
    )
    duplicated = await db.fetchval(
        """SELECT count(*) FROM (SELECT outbound_message_id FROM outbound_delivery_event
                                  WHERE outbound_message_id = ANY($1) AND delivery_status = 'DELIVERED'
                                  GROUP BY outbound_message_id HAVING count(DISTINCT provider_message_id) > 1) d""",
        ids,
    )
    return len(ids) - sent, duplicated


async def _all_delivered(db: asyncpg.Connection, ids: list[int]) -> None:
    query = "SELECT count(*) = $2 FROM outbound_message WHERE id = ANY($1) AND delivery_status = 'DELIVERED'"
    await wait_for(db, query, ids, len(ids), timeout=60)


async def _set_first(db: asyncpg.Connection, pair: Pair, dispatcher: Dispatcher, mode: str, state: str) -> None:
    """Write the first provider's row as the operator does, and wait until the running worker has read it."""
    await db.execute(
        "UPDATE provider_control SET circuit_mode = $1, circuit_state = $2 WHERE provider = $3", mode, state, pair.first
    )
    async with asyncio.timeout(30):
        while (row := dispatcher.fleet.get(pair.first)) is None or row.circuit_state != state:
            await asyncio.sleep(0.05)


async def _rows(db: asyncpg.Connection, pair: Pair) -> None:
    await db.execute(CONTROL, pair.first, pair.channel.value, 10)
    await db.execute(CONTROL, pair.backup, pair.channel.value, 20)


async def test_the_first_provider_answering_500s_fails_over_to_the_backup(
    pair: Pair, db_dsn: str, db: asyncpg.Connection, webhooks: Webhooks
) -> None:
    await _rows(db, pair)
    async with _served(pair, webhooks) as served:
        served.first.config.rules = [Rule(pattern=".", action="http:500")]
        metrics = Metrics()
        breaker = BreakerConfig(failure_threshold=THRESHOLD, open_seconds=600)
        dispatcher = Dispatcher(served.providers, breaker=breaker, metrics=metrics)
        ids = await _enqueue(db, pair, MESSAGES)
        async with _worker(db_dsn, dispatcher, metrics):
            rows = await _wait_final(db, ids)
            await _all_delivered(db, ids)
    assert [(r["status"], r["provider"]) for r in rows] == [("SENT", pair.backup)] * MESSAGES
    assert await _lost_and_duplicated(db, ids) == (0, 0)
    assert served.first.stats["accepted"] == 0
    assert THRESHOLD <= served.first.stats["http:500"] < THRESHOLD + IN_FLIGHT  # then the circuit kept them off
    assert served.backup.stats["accepted"] == MESSAGES
    assert served.backup.stats["auth_failed"] == 0  # SES: every request's SigV4 signature checked out
    assert dispatcher.states()[pair.first] is CircuitState.OPEN
    failed_over = metrics.registry.get_sample_value(
        "outbound_provider_failover_total",
        {"channel": pair.channel.value, "from_provider": pair.first, "to_provider": pair.backup},
    )
    assert failed_over is not None
    assert failed_over >= 1


async def test_force_open_on_the_first_provider_switches_the_channel_to_the_backup_and_back(
    pair: Pair, db_dsn: str, db: asyncpg.Connection, webhooks: Webhooks
) -> None:
    """The runbook's switch to the backup provider: the operator writes the first provider's row as
    ForceOpen (circuit OPEN); the running worker sends the next messages through the backup, and
    through the first again once the row is back to Auto/CLOSED."""
    await _rows(db, pair)
    async with _served(pair, webhooks) as served:
        metrics = Metrics()
        dispatcher = Dispatcher(served.providers, metrics=metrics)
        async with _worker(db_dsn, dispatcher, metrics):
            before = await _enqueue(db, pair, 10)
            await _wait_final(db, before)
            await _set_first(db, pair, dispatcher, "ForceOpen", "OPEN")
            during = await _enqueue(db, pair, MESSAGES)
            await _wait_final(db, during)
            await _set_first(db, pair, dispatcher, "Auto", "CLOSED")
            after = await _enqueue(db, pair, 10)
            await _wait_final(db, after)
            await _all_delivered(db, before + during + after)
    by_provider = {
        name: set(await db.fetchval("SELECT array_agg(id) FROM outbound_message WHERE provider = $1", name) or [])
        for name in (pair.first, pair.backup)
    }
    assert by_provider == {pair.first: set(before + after), pair.backup: set(during)}
    assert await _lost_and_duplicated(db, before + during + after) == (0, 0)
    assert (served.first.stats["accepted"], served.backup.stats["accepted"]) == (20, MESSAGES)
