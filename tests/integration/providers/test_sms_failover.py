"""SMS failover between two real providers, end to end: PostgreSQL -> OutboundJobWorker -> Twilio's
and Vonage's clients and sandboxes over HTTP -> signed receipts -> the webhook router -> PostgreSQL.
Both providers have a provider_control row on channel SMS (Twilio priority 10, Vonage 20), as the
operator writes them for two ChannelProviders. Whether Twilio fails (500s: this pod's circuit
opens) or is switched off fleet-wide (the runbook's ForceOpen), Vonage sends; every message is
sent and delivered once: none lost, none sent twice."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from outbound_sender import sandboxes
from outbound_sender.domain import Channel, CircuitState, NewMessage
from outbound_sender.metrics import Metrics
from outbound_sender.providers.base import Provider
from outbound_sender.providers.twilio import TwilioProvider
from outbound_sender.providers.vonage import VonageProvider
from outbound_sender.sandboxes.base import Rule
from outbound_sender.store import messages
from outbound_sender.worker.circuit import BreakerConfig
from outbound_sender.worker.dispatch import Dispatcher
from outbound_sender.worker.retry import RetryPolicy
from outbound_sender.worker.service import OutboundJobWorker
from outbound_sender.worker.settings import WorkerSettings
from tests.integration.providers.conftest import Webhooks, http_client, serve
from tests.workers import wait_for

CONTROL = """INSERT INTO provider_control (provider, channel, kind, priority, circuit_mode, circuit_state)
              VALUES ($1, 'SMS', $1, $2, $3, $4)"""
MESSAGES = 30
IN_FLIGHT = 5  # sends at once: those already on their way when the circuit opens still reach Twilio
THRESHOLD = 3


@dataclass
class Sms:
    """Both SMS sandboxes, served, and the real clients pointed at them."""

    twilio: sandboxes.TwilioSandbox
    vonage: sandboxes.VonageSandbox
    providers: list[Provider]


@contextlib.asynccontextmanager
async def _sms(webhooks: Webhooks) -> AsyncIterator[Sms]:
    twilio_app, vonage_app = sandboxes.TwilioSandbox(), sandboxes.VonageSandbox()
    twilio_app.config.rules = []
    vonage_app.config.rules = []
    async with serve(twilio_app) as twilio_url, serve(vonage_app) as vonage_url:
        yield Sms(
            twilio_app,
            vonage_app,
            [
                TwilioProvider(http_client(), sandboxes.twilio_settings(twilio_url), callback_base=webhooks.url),
                VonageProvider(http_client(), sandboxes.vonage_settings(vonage_url), callback_base=webhooks.url),
            ],
        )
        await twilio_app.webhooks.drain(timeout=20)
        await vonage_app.webhooks.drain(timeout=20)


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


async def _enqueue(db: asyncpg.Connection, count: int) -> list[int]:
    new = NewMessage("org", Channel.SMS, "+15557654321", body="failover", max_attempts=5)
    return [await messages.enqueue(db, new) for _ in range(count)]


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
                                  WHERE outbound_message_id = ANY($1) AND raw_status = 'delivered'
                                  GROUP BY outbound_message_id HAVING count(DISTINCT provider_message_id) > 1) d""",
        ids,
    )
    return len(ids) - sent, duplicated


async def _all_delivered(db: asyncpg.Connection, ids: list[int]) -> None:
    query = "SELECT count(*) = $2 FROM outbound_message WHERE id = ANY($1) AND delivery_status = 'DELIVERED'"
    await wait_for(db, query, ids, len(ids), timeout=60)


async def _set_twilio(db: asyncpg.Connection, dispatcher: Dispatcher, mode: str, state: str) -> None:
    """Write Twilio's row as the operator does, and wait until the running worker has read it."""
    await db.execute(
        "UPDATE provider_control SET circuit_mode = $1, circuit_state = $2 WHERE provider = 'twilio'", mode, state
    )
    async with asyncio.timeout(30):
        while (row := dispatcher.fleet.get("twilio")) is None or row.circuit_state != state:
            await asyncio.sleep(0.05)


async def test_twilio_answering_500s_fails_over_to_vonage(
    db_dsn: str, db: asyncpg.Connection, webhooks: Webhooks
) -> None:
    await db.execute(CONTROL, "twilio", 10, "Auto", "CLOSED")
    await db.execute(CONTROL, "vonage", 20, "Auto", "CLOSED")
    async with _sms(webhooks) as sms:
        sms.twilio.config.rules = [Rule(pattern=".", action="http:500")]
        metrics = Metrics()
        breaker = BreakerConfig(failure_threshold=THRESHOLD, open_seconds=600)
        dispatcher = Dispatcher(sms.providers, breaker=breaker, metrics=metrics)
        ids = await _enqueue(db, MESSAGES)
        async with _worker(db_dsn, dispatcher, metrics):
            rows = [await messages.wait_final(db, message_id, timeout=60) for message_id in ids]
            await _all_delivered(db, ids)
    twilio_app, vonage_app = sms.twilio, sms.vonage
    assert [(r["status"], r["provider"]) for r in rows] == [("SENT", "vonage")] * MESSAGES
    assert await _lost_and_duplicated(db, ids) == (0, 0)
    assert twilio_app.stats["accepted"] == 0
    assert THRESHOLD <= twilio_app.stats["http:500"] < THRESHOLD + IN_FLIGHT  # then the circuit kept them off
    assert vonage_app.stats["accepted"] == MESSAGES
    assert dispatcher.states()["twilio"] is CircuitState.OPEN
    failed_over = metrics.registry.get_sample_value(
        "outbound_provider_failover_total", {"channel": "SMS", "from_provider": "twilio", "to_provider": "vonage"}
    )
    assert failed_over is not None
    assert failed_over >= 1


async def test_force_open_on_twilio_switches_the_channel_to_vonage_and_back(
    db_dsn: str, db: asyncpg.Connection, webhooks: Webhooks
) -> None:
    """The runbook's switch to the backup provider: the operator writes Twilio's row as ForceOpen
    (circuit OPEN); the running worker sends the next messages through Vonage, and through Twilio
    again once the row is back to Auto/CLOSED."""
    await db.execute(CONTROL, "twilio", 10, "Auto", "CLOSED")
    await db.execute(CONTROL, "vonage", 20, "Auto", "CLOSED")
    async with _sms(webhooks) as sms:
        metrics = Metrics()
        dispatcher = Dispatcher(sms.providers, metrics=metrics)
        async with _worker(db_dsn, dispatcher, metrics):
            before = await _enqueue(db, 10)
            for message_id in before:
                await messages.wait_final(db, message_id, timeout=60)
            await _set_twilio(db, dispatcher, "ForceOpen", "OPEN")
            during = await _enqueue(db, MESSAGES)
            for message_id in during:
                await messages.wait_final(db, message_id, timeout=60)
            await _set_twilio(db, dispatcher, "Auto", "CLOSED")
            after = await _enqueue(db, 10)
            for message_id in after:
                await messages.wait_final(db, message_id, timeout=60)
            await _all_delivered(db, before + during + after)
    twilio_app, vonage_app = sms.twilio, sms.vonage
    by_provider = {
        name: set(await db.fetchval("SELECT array_agg(id) FROM outbound_message WHERE provider = $1", name) or [])
        for name in ("twilio", "vonage")
    }
    assert by_provider == {"twilio": set(before + after), "vonage": set(during)}
    assert await _lost_and_duplicated(db, before + during + after) == (0, 0)
    assert (twilio_app.stats["accepted"], vonage_app.stats["accepted"]) == (20, MESSAGES)
