"""OutboundJobWorker against the real database: the message state machine end to end."""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import asyncpg

from outbound_sender.domain import Channel, ErrorCode, NewMessage, OutboundMessage
from outbound_sender.errors import PermanentError, RateLimitedError, TemporaryError
from outbound_sender.providers.base import SendResult
from outbound_sender.store.messages import enqueue
from outbound_sender.worker.settings import ChannelSwitches
from tests.workers import ScriptedProvider, always_ok, enqueue_sms, one, running_worker, statuses, wait_for

ALL_FINAL = "SELECT count(*) = $1 FROM outbound_message WHERE status IN ('SENT', 'FAILED')"


async def test_a_message_is_sent_and_its_attempt_recorded(db: asyncpg.Connection, db_dsn: str) -> None:
    [message_id] = await enqueue_sms(db, correlation_id="corr-1")
    async with running_worker(db_dsn, ScriptedProvider()):
        await wait_for(db, ALL_FINAL, 1)
    row = await one(db, "SELECT * FROM outbound_message WHERE id = $1", message_id)
    assert (row["status"], row["attempt_count"], row["provider"]) == ("SENT", 1, "scripted")
    assert row["provider_message_id"] == f"ok-{message_id}-1"
    assert row["sent_at"] is not None
    assert row["lease_id"] is not None
    assert row["leased_until"] is None
    attempts = await db.fetch("SELECT * FROM outbound_attempt WHERE outbound_message_id = $1", message_id)
    assert [(a["attempt_no"], a["outcome"], a["applied"]) for a in attempts] == [(1, "SENT", True)]


async def test_a_permanent_error_fails_at_once_into_the_dead_letter_queue(db: asyncpg.Connection, db_dsn: str) -> None:
    error = PermanentError(ErrorCode.INVALID_PHONE_NUMBER, "bad number", provider_code="21211", http_status=400)
    provider = ScriptedProvider(lambda _m, _n: error)
    [message_id] = await enqueue_sms(db)
    async with running_worker(db_dsn, provider):
        await wait_for(db, ALL_FINAL, 1)
    row = await one(db, "SELECT * FROM outbound_message WHERE id = $1", message_id)
    assert (row["status"], row["error_code"], row["attempt_count"]) == ("FAILED", "INVALID_PHONE_NUMBER", 1)
    assert provider.calls[message_id] == 1
    in_dlq = await db.fetchval(
        "SELECT count(*) FROM outbound_message WHERE status = 'FAILED' AND attempt_count >= max_attempts"
    )
    assert in_dlq == 1
    attempt = await one(db, "SELECT * FROM outbound_attempt WHERE outbound_message_id = $1", message_id)
    assert (attempt["provider_code"], attempt["http_status"], attempt["outcome"]) == ("21211", 400, "FAILED")


async def test_temporary_errors_back_off_then_succeed(db: asyncpg.Connection, db_dsn: str) -> None:
    def flaky(message: OutboundMessage, call: int) -> SendResult | Exception:
        return TemporaryError(ErrorCode.TEMPORARY_ERROR, "503") if call < 3 else always_ok(message, call)

    [message_id] = await enqueue_sms(db)
    async with running_worker(db_dsn, ScriptedProvider(flaky)):
        await wait_for(db, ALL_FINAL, 1)
    attempts = await db.fetch(
        "SELECT * FROM outbound_attempt WHERE outbound_message_id = $1 ORDER BY attempt_no", message_id
    )
    assert [a["outcome"] for a in attempts] == ["RETRY", "RETRY", "SENT"]
    assert all(a["next_retry_at"] is not None for a in attempts[:2])
    for earlier, later in itertools.pairwise(attempts):
        assert later["started_at"] >= earlier["next_retry_at"]
    row = await one(db, "SELECT status, attempt_count, error_code FROM outbound_message WHERE id = $1", message_id)
    assert tuple(row) == ("SENT", 3, None)


async def test_exhausted_retries_end_failed_with_the_last_error(db: asyncpg.Connection, db_dsn: str) -> None:
    provider = ScriptedProvider(lambda _m, _n: TemporaryError(ErrorCode.TEMPORARY_ERROR, "still down"))
    [message_id] = await enqueue_sms(db, max_attempts=3)
    async with running_worker(db_dsn, provider):
        await wait_for(db, ALL_FINAL, 1)
    row = await one(db, "SELECT status, attempt_count, error_code FROM outbound_message WHERE id = $1", message_id)
    assert tuple(row) == ("FAILED", 3, "TEMPORARY_ERROR")
    assert provider.calls[message_id] == 3


async def test_the_providers_retry_hint_is_honoured(db: asyncpg.Connection, db_dsn: str) -> None:
    def throttled_once(message: OutboundMessage, call: int) -> SendResult | Exception:
        if call == 1:
            return RateLimitedError(ErrorCode.RATE_LIMIT_EXCEEDED, "429", retry_after=1.5)
        return always_ok(message, call)

    [message_id] = await enqueue_sms(db)
    async with running_worker(db_dsn, ScriptedProvider(throttled_once)):
        await wait_for(db, ALL_FINAL, 1)
    first, second = await db.fetch(
        "SELECT created_at, started_at FROM outbound_attempt WHERE outbound_message_id = $1 ORDER BY attempt_no",
        message_id,
    )
    assert (second["started_at"] - first["created_at"]).total_seconds() >= 1.5


async def test_notify_wakes_an_idle_worker_long_before_the_poll(db: asyncpg.Connection, db_dsn: str) -> None:
    async with running_worker(db_dsn, ScriptedProvider(), poll_interval_ms=600_000) as worker:
        await asyncio.sleep(0.5)  # the worker has polled once and sleeps for 10 minutes
        await enqueue_sms(db)
        await wait_for(db, ALL_FINAL, 1, timeout=5)
        assert worker.claimed_total == 1


async def test_higher_priority_goes_first(db: asyncpg.Connection, db_dsn: str) -> None:
    low = await enqueue_sms(db, 3, priority=0)
    high = await enqueue_sms(db, 2, priority=5)
    provider = ScriptedProvider()
    async with running_worker(db_dsn, provider, batch_size=1, max_in_flight=1):
        await wait_for(db, ALL_FINAL, 5)
    assert provider.order == high + low


async def test_a_disabled_channel_stays_queued_while_others_flow(db: asyncpg.Connection, db_dsn: str) -> None:
    whatsapp = await enqueue(
        db, NewMessage(org_id="o", channel=Channel.WHATSAPP, to_recipient="+15551230000", template_code="t")
    )
    [sms_id] = await enqueue_sms(db)
    switches = ChannelSwitches(whatsapp_provider_enabled=False)
    async with running_worker(db_dsn, ScriptedProvider(), switches=switches):
        await wait_for(db, "SELECT status = 'SENT' FROM outbound_message WHERE id = $1", sms_id)
        await asyncio.sleep(0.5)
    assert await db.fetchval("SELECT status FROM outbound_message WHERE id = $1", whatsapp) == "QUEUED"


async def test_concurrent_workers_never_claim_the_same_message_twice(db: asyncpg.Connection, db_dsn: str) -> None:
    ids = await enqueue_sms(db, 300)
    provider = ScriptedProvider(latency=0.002)
    async with contextlib.AsyncExitStack() as stack:
        for n in range(4):
            await stack.enter_async_context(running_worker(db_dsn, provider, batch_size=7, id=f"w{n}"))
        await wait_for(db, ALL_FINAL, len(ids), timeout=60)
    assert set(provider.calls) == set(ids)
    assert max(provider.calls.values()) == 1
    assert await db.fetchval("SELECT count(*) FROM outbound_attempt") == len(ids)


async def test_sigterm_drain_finishes_in_flight_sends_and_leaves_nothing_sending(
    db: asyncpg.Connection, db_dsn: str
) -> None:
    ids = await enqueue_sms(db, 20)
    async with running_worker(db_dsn, ScriptedProvider(latency=0.5), batch_size=20, max_in_flight=20):
        await wait_for(db, "SELECT count(*) = 20 FROM outbound_message WHERE status = 'SENDING'")
    assert await statuses(db) == {"SENT": len(ids)}


async def test_a_send_cut_short_by_shutdown_goes_back_to_the_queue(db: asyncpg.Connection, db_dsn: str) -> None:
    await enqueue_sms(db, 5)
    async with running_worker(db_dsn, ScriptedProvider(latency=30), shutdown_grace_seconds=0.2):
        await wait_for(db, "SELECT count(*) = 5 FROM outbound_message WHERE status = 'SENDING'")
    assert await statuses(db) == {"QUEUED": 5}
    ambiguous = await db.fetchval("SELECT count(*) FROM outbound_attempt WHERE ambiguous AND outcome = 'RETRY'")
    assert ambiguous == 5
