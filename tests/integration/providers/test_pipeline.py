"""The whole pipeline with the real clients: PostgreSQL -> OutboundJobWorker -> provider sandboxes ->
signed webhooks -> PostgreSQL. Failover to a backup provider; an ambiguous send settled by its
delivery receipt instead of being sent twice."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest

from outbound_sender.domain import Channel, CircuitState, NewMessage
from outbound_sender.metrics import Metrics
from outbound_sender.providers import registry
from outbound_sender.providers.base import Provider
from outbound_sender.providers.twilio import TwilioProvider
from outbound_sender.sandboxes import twilio as twilio_sandbox
from outbound_sender.sandboxes.base import Rule
from outbound_sender.store import messages
from outbound_sender.webhooks import twilio as twilio_webhook
from outbound_sender.webhooks.store import ReceiptCheck
from outbound_sender.worker.circuit import BreakerConfig
from outbound_sender.worker.dispatch import Dispatcher
from outbound_sender.worker.retry import RetryPolicy
from outbound_sender.worker.service import OutboundJobWorker
from outbound_sender.worker.settings import WorkerSettings
from tests.integration.providers.conftest import CASES, Webhooks, http_client, serve
from tests.workers import wait_for

FAST_RETRY = RetryPolicy(base_seconds=0.05, max_seconds=0.2)
# One provider per channel (the first listed); the backups have a failover test of their own.
PRIMARIES = [case for case in CASES if case is next(c for c in CASES if c.channel is case.channel)]


@contextlib.asynccontextmanager
async def worker(
    dsn: str, dispatcher: Dispatcher, metrics: Metrics, **overrides: int
) -> AsyncIterator[OutboundJobWorker]:
    values: dict[str, object] = {"poll_interval_ms": 100, "lease_seconds": 30, "recovery_interval_ms": 500}
    settings = WorkerSettings.model_validate(values | overrides)
    running = OutboundJobWorker(dsn, dispatcher, settings=settings, retry=FAST_RETRY, metrics=metrics)
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    try:
        yield running
    finally:
        stop.set()
        await task


async def test_all_three_providers_send_through_the_pipeline(
    db_dsn: str, db: asyncpg.Connection, webhooks: Webhooks
) -> None:
    apps = registry.sandbox_apps(webhooks.url)
    async with contextlib.AsyncExitStack() as stack:
        urls = {name: await stack.enter_async_context(serve(app)) for name, app in apps.items()}
        providers = [case.provider(urls[case.name], webhooks=webhooks.url) for case in PRIMARIES]
        metrics = Metrics()
        new = [NewMessage("org", case.channel, case.recipient, body="hello", subject="hi") for case in PRIMARIES]
        ids = [await messages.enqueue(db, m) for m in new]
        async with worker(db_dsn, Dispatcher(providers, metrics=metrics), metrics):
            rows = [await messages.wait_final(db, message_id, timeout=20) for message_id in ids]
            for case, message_id in zip(PRIMARIES, ids, strict=True):
                query = "SELECT delivery_status FROM outbound_message WHERE id = $1"
                for _ in range(200):
                    if await db.fetchval(query, message_id) == case.final_status:
                        break
                    await asyncio.sleep(0.025)
    for case, row in zip(PRIMARIES, rows, strict=True):
        assert (row["status"], row["provider"]) == ("SENT", case.name)
        assert row["provider_message_id"].startswith(case.id_prefix)
    delivered = await db.fetch("SELECT channel, delivery_status FROM outbound_message ORDER BY id")
    assert [r["delivery_status"] for r in delivered] == [case.final_status for case in PRIMARIES]


async def test_failover_to_the_backup_provider_when_the_primary_circuit_opens(
    db_dsn: str, db: asyncpg.Connection
) -> None:
    primary_app, backup_app = twilio_sandbox.TwilioSandbox(), twilio_sandbox.TwilioSandbox()
    primary_app.config.rules = [Rule(pattern=".", action="http:503")]
    backup_app.config.rules = []
    async with serve(primary_app) as primary_url, serve(backup_app) as backup_url:
        providers: list[Provider] = [
            TwilioProvider(http_client(), twilio_sandbox.account(primary_url), name="twilio"),
            TwilioProvider(http_client(), twilio_sandbox.account(backup_url), name="twilio-backup"),
        ]
        metrics = Metrics()
        dispatcher = Dispatcher(
            providers,
            priorities={"twilio": 1, "twilio-backup": 2},
            breaker=BreakerConfig(failure_threshold=2, open_seconds=60),
            metrics=metrics,
        )
        new = NewMessage("org", Channel.SMS, "+15557654321", body="hello", max_attempts=5)
        ids = [await messages.enqueue(db, new) for _ in range(6)]
        # One send at a time, so the count is exact: concurrent sends already in flight when the
        # circuit opens still reach the primary (and are retried on the backup).
        async with worker(db_dsn, dispatcher, metrics, batch_size=1, max_in_flight=1):
            rows = [await messages.wait_final(db, message_id, timeout=20) for message_id in ids]
    assert [(r["status"], r["provider"]) for r in rows] == [("SENT", "twilio-backup")] * 6
    failed_on_primary = await db.fetchval(
        "SELECT count(*) FROM outbound_attempt WHERE provider = 'twilio' AND error_code = 'TEMPORARY_ERROR'"
    )
    assert failed_on_primary == 2  # the threshold: then the circuit kept every message off it
    assert primary_app.stats["http:503"] == 2
    assert backup_app.stats["accepted"] == 6
    assert dispatcher.states()["twilio"] is CircuitState.OPEN
    gauge = metrics.registry.get_sample_value
    assert gauge("outbound_provider_circuit_state", {"provider": "twilio", "channel": "SMS"}) == 2
    assert gauge("outbound_provider_circuit_state", {"provider": "twilio-backup", "channel": "SMS"}) == 0


async def test_every_circuit_open_leaves_the_channel_alone_without_burning_attempts(
    db_dsn: str, db: asyncpg.Connection
) -> None:
    """With every provider of its channel open, a worker claims nothing of that channel: the message
    stays QUEUED with the one attempt that opened the circuit, and no deferral row is written."""
    app = twilio_sandbox.TwilioSandbox()
    app.config.rules = [Rule(pattern=".", action="http:503")]
    async with serve(app) as url:
        provider = TwilioProvider(http_client(), twilio_sandbox.account(url))
        dispatcher = Dispatcher([provider], breaker=BreakerConfig(failure_threshold=1, open_seconds=60))
        message_id = await messages.enqueue(db, NewMessage("org", Channel.SMS, "+15557654321", body="x"))
        async with worker(db_dsn, dispatcher, Metrics()) as running:
            await wait_for(db, "SELECT count(*) = 1 FROM outbound_attempt WHERE outbound_message_id = $1", message_id)
            # Due again at once (the runbook's "clear next_retry_at"), woken by NOTIFY, polled every
            # 100 ms: over ten poll intervals the worker must leave it alone.
            await db.execute("UPDATE outbound_message SET retry_at = NULL WHERE id = $1", message_id)
            await db.execute("SELECT pg_notify('outbound_message_ready', 'SMS')")
            claimed = running.claimed_total
            await asyncio.sleep(1.0)
            assert running.claimed_total == claimed
    row = await messages.get_message(db, message_id)
    assert row is not None
    assert (row["status"], row["attempt_count"], row["error_code"]) == ("QUEUED", 1, "TEMPORARY_ERROR")
    assert await db.fetchval("SELECT count(*) FROM outbound_attempt WHERE outcome = 'DEFER'") == 0
    assert app.stats["http:503"] == 1


@pytest.mark.parametrize("name", ["twilio", "vonage"])
async def test_an_ambiguous_send_is_settled_by_its_receipt_not_sent_twice(
    name: str, db_dsn: str, db: asyncpg.Connection, webhooks: Webhooks
) -> None:
    case = next(c for c in CASES if c.name == name)
    app = case.sandbox()
    app.config.rules = [Rule(pattern=".", action="slow")]  # accepted; the answer comes too late
    app.config.timeout_hold_seconds = 1.0
    async with serve(app) as url:
        provider = case.provider(url, read_timeout=0.3, webhooks=webhooks.url, ambiguous_retry=1.0)
        metrics = Metrics()
        message_id = await messages.enqueue(db, NewMessage("org", Channel.SMS, "+15557654321", body="x"))
        receipts = ReceiptCheck()
        async with worker(db_dsn, Dispatcher([provider], metrics=metrics, receipts=receipts), metrics):
            row = await messages.wait_final(db, message_id, timeout=20)
    assert row["status"] == "SENT"
    assert app.stats["accepted"] == 1  # one send reached the provider: no duplicate
    assert row["provider_message_id"].startswith(case.id_prefix)  # learnt from the receipt
    assert row["provider_message_id"]
    attempts = [(a["outcome"], a["ambiguous"]) for a in await messages.get_attempts(db, message_id)]
    # Two orders settle it, both without a second send: the receipt came before the timed-out call
    # was recorded, so the retry found it (a second attempt, SENT without a call); or, on a slow
    # machine, it came while the message waited to retry, and the webhook settled it.
    settled_by_webhook = await db.fetchval(
        "SELECT count(*) FROM outbound_delivery_event WHERE outbound_message_id = $1 AND resolved_ambiguous",
        message_id,
    )
    if settled_by_webhook:
        assert attempts == [("RETRY", True)]
    else:
        assert attempts == [("RETRY", True), ("SENT", False)]
    assert (
        metrics.registry.get_sample_value("outbound_message_ambiguous_send_total", {"channel": "SMS", "provider": name})
        == 1
    )


async def test_a_receipt_arriving_after_an_ambiguous_send_settles_the_queued_message(
    db: asyncpg.Connection, webhooks: Webhooks
) -> None:
    """The other order: the send timed out, the retry waits, then the receipt comes."""
    import httpx

    message_id = await messages.enqueue(db, NewMessage("org", Channel.SMS, "+15557654321", body="x"))
    await db.execute(
        "UPDATE outbound_message SET status = 'QUEUED', claim_count = 1, attempt_count = 1,"
        " error_code = 'TEMPORARY_ERROR', retry_at = now() + interval '1 hour' WHERE id = $1",
        message_id,
    )
    await db.execute(
        "INSERT INTO outbound_attempt"
        " (outbound_message_id, attempt_no, channel, provider, outcome, ambiguous)"
        " VALUES ($1, 1, 'SMS', 'twilio', 'RETRY', true)",
        message_id,
    )
    url = f"{webhooks.url}/twilio/status?outbound_id={message_id}"
    params = {"MessageSid": "SM" + "1" * 32, "MessageStatus": "sent"}
    token = twilio_sandbox.AUTH_TOKEN
    headers = {"x-twilio-signature": twilio_webhook.sign(token, url, params.items())}
    async with httpx.AsyncClient() as client:
        assert (await client.post(url, data=params, headers=headers)).status_code == 200
    row = await messages.get_message(db, message_id)
    assert row is not None
    assert (row["status"], row["error_code"], row["retry_at"]) == ("SENT", None, None)
    assert row["provider_message_id"] == "SM" + "1" * 32
    resolved = webhooks.metrics.registry.get_sample_value(
        "outbound_webhook_events_total", {"provider": "twilio", "outcome": "resolved_ambiguous"}
    )
    assert resolved == 1
