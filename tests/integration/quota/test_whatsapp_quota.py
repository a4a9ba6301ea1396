"""WhatsApp quota end to end: real workers, real PostgreSQL, real Redis (runbook scenario 4)."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outbound_sender.domain import Channel, NewMessage
from outbound_sender.embedded import EmbeddedRedis
from outbound_sender.quota.policy import QuotaPolicy
from outbound_sender.sandboxes import whatsapp as whatsapp_sandbox
from outbound_sender.store.db import create_pool
from outbound_sender.store.messages import enqueue, enqueue_many
from outbound_sender.store.quota import QuotaLedger, Reservation
from tests.workers import ScriptedProvider, one, running_worker, statuses, wait_for

POLICY = """INSERT INTO whatsapp_quota_policy (org_id, daily_limit, defer_non_urgent_above_percent, fallback_channel)
            VALUES ($1, $2, $3, $4)"""
LEDGER = "INSERT INTO whatsapp_rate_limit (org_id, messages_sent_count, quota_limit, reset_at) VALUES ($1, $2, $3, $4)"


def whatsapp(n: int, org: str = "acme", **fields: object) -> NewMessage:
    return NewMessage(org_id=org, channel=Channel.WHATSAPP, to_recipient=f"+1555777{n:04d}", **fields)  # type: ignore[arg-type]


async def test_many_workers_never_exceed_the_quota(db: asyncpg.Connection, db_dsn: str) -> None:
    await db.execute(LEDGER, "acme", 0, 37, None or await db.fetchval("SELECT now() + interval '1 day'"))
    await enqueue_many(db, [whatsapp(n, body="x") for n in range(200)])
    provider = ScriptedProvider(latency=0.005)
    async with contextlib.AsyncExitStack() as stack:
        for n in range(5):
            await stack.enter_async_context(running_worker(db_dsn, provider, batch_size=13, id=f"w{n}"))
        await wait_for(db, "SELECT count(*) = 37 FROM outbound_message WHERE status = 'SENT'")
        await wait_for(db, "SELECT count(*) = 163 FROM outbound_message WHERE error_code = 'QUOTA_EXCEEDED'")
    assert sum(provider.calls.values()) == 37
    assert await db.fetchval("SELECT messages_sent_count FROM whatsapp_rate_limit") == 37
    assert await statuses(db) == {"SENT": 37, "QUEUED": 163}
    assert await db.fetchval("SELECT max(attempt_count) FROM outbound_message WHERE status = 'QUEUED'") == 0


@pytest.fixture
async def pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(db_dsn, min_size=4, max_size=4)
    yield pool
    await pool.close()


operations = st.lists(st.sampled_from(["reserve", "reserve", "reserve", "release", "shrink"]), min_size=5, max_size=40)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations, limit=st.integers(0, 12))
async def test_interleaved_reservations_never_pass_the_limit(pool: asyncpg.Pool, ops: list[str], limit: int) -> None:
    org = f"h{uuid.uuid4().hex}"  # examples share the database: a fresh organisation each
    ledger, policy = QuotaLedger(pool), QuotaPolicy(org_id=org, daily_limit=limit)
    taken: list[Reservation] = []

    async def run(op: str) -> None:
        if op == "reserve":
            granted = await ledger.reserve(policy)
            if isinstance(granted, Reservation):
                taken.append(granted)
        elif op == "release" and taken:
            await ledger.release(taken.pop())
        elif op == "shrink":  # the runbook's option B, concurrently with the sends
            await pool.execute("UPDATE whatsapp_rate_limit SET quota_limit = quota_limit * 0.5 WHERE org_id = $1", org)

    await asyncio.gather(*(run(op) for op in ops))
    row = await pool.fetchrow("SELECT messages_sent_count, quota_limit FROM whatsapp_rate_limit WHERE org_id = $1", org)
    if row is not None:
        assert row["messages_sent_count"] == len(taken)
        assert len(taken) <= limit


async def test_redis_killed_mid_run_keeps_the_daily_quota(db: asyncpg.Connection, db_dsn: str) -> None:
    redis = EmbeddedRedis(Path(tempfile.mkdtemp())).start()
    await db.execute(LEDGER, "acme", 0, 50, await db.fetchval("SELECT now() + interval '1 day'"))
    await enqueue_many(db, [whatsapp(n, body="x") for n in range(120)])
    provider = ScriptedProvider(latency=0.02)
    try:
        async with running_worker(db_dsn, provider, redis_url=redis.url, batch_size=5) as worker:
            await wait_for(db, "SELECT count(*) >= 10 FROM outbound_message WHERE status = 'SENT'")
            redis.kill()
            await wait_for(db, "SELECT count(*) = 50 FROM outbound_message WHERE status = 'SENT'", timeout=30)
            await asyncio.sleep(0.5)
            assert worker.metrics.ratelimit_fallback._value.get() == 1
    finally:
        redis.stop()
    assert sum(provider.calls.values()) == 50
    assert await db.fetchval("SELECT messages_sent_count FROM whatsapp_rate_limit") == 50


async def test_the_window_resets_at_its_boundary(db: asyncpg.Connection, db_dsn: str) -> None:
    await db.execute(LEDGER, "acme", 3, 3, await db.fetchval("SELECT now() + interval '1.5 seconds'"))
    ids = [await enqueue(db, whatsapp(n, body="x")) for n in range(2)]
    async with running_worker(db_dsn, ScriptedProvider()):
        await wait_for(db, "SELECT count(*) = 2 FROM outbound_message WHERE error_code = 'QUOTA_EXCEEDED'")
        await wait_for(db, "SELECT count(*) = 2 FROM outbound_message WHERE status = 'SENT'", timeout=10)
    ledger = await one(
        db, "SELECT messages_sent_count, reset_at > now() + interval '23 hours' AS next FROM whatsapp_rate_limit"
    )
    assert tuple(ledger) == (2, True)
    sent = await db.fetch("SELECT routing_note, attempt_count FROM outbound_message WHERE id = ANY($1)", ids)
    assert all(r["attempt_count"] == 1 for r in sent)


async def test_urgent_templates_go_first_and_bypass_the_deferral_threshold(db: asyncpg.Connection, db_dsn: str) -> None:
    await db.execute(POLICY, "acme", 10, 50, None)
    await db.execute(LEDGER, "acme", 5, 10, await db.fetchval("SELECT now() + interval '1 day'"))
    bulk = await enqueue(db, whatsapp(1, template_code="newsletter"))
    urgent = await enqueue(db, whatsapp(2, template_code="appointment_reminder"))
    assert await db.fetchval("SELECT priority FROM outbound_message WHERE id = $1", urgent) == 100
    provider = ScriptedProvider()
    async with running_worker(db_dsn, provider, batch_size=1, max_in_flight=1):
        await wait_for(db, "SELECT status = 'SENT' FROM outbound_message WHERE id = $1", urgent)
        await wait_for(db, "SELECT error_code = 'QUOTA_EXCEEDED' FROM outbound_message WHERE id = $1", bulk)
    assert provider.order[0] == urgent
    row = await one(db, "SELECT status, attempt_count, error_message FROM outbound_message WHERE id = $1", bulk)
    assert (row["status"], row["attempt_count"]) == ("QUEUED", 0)
    assert "above the deferral threshold" in row["error_message"]


async def test_above_the_threshold_messages_fall_back_to_sms(db: asyncpg.Connection, db_dsn: str) -> None:
    await db.execute(POLICY, "acme", 10, 50, "SMS")
    await db.execute(LEDGER, "acme", 5, 10, await db.fetchval("SELECT now() + interval '1 day'"))
    text = await enqueue(db, whatsapp(1, body="Your parcel is on its way"))
    template_only = await enqueue(db, whatsapp(2, template_code="newsletter"))
    provider = ScriptedProvider()
    async with running_worker(db_dsn, provider):
        await wait_for(db, "SELECT status = 'SENT' FROM outbound_message WHERE id = $1", text)
        await wait_for(db, "SELECT error_code = 'QUOTA_EXCEEDED' FROM outbound_message WHERE id = $1", template_only)
    moved = await one(db, "SELECT channel, routing_note FROM outbound_message WHERE id = $1", text)
    assert moved["channel"] == "SMS"
    assert moved["routing_note"].startswith("re-routed WHATSAPP->SMS")
    attempts = await db.fetch(
        "SELECT channel, outcome FROM outbound_attempt WHERE outbound_message_id = $1 ORDER BY attempt_no", text
    )
    assert [tuple(a) for a in attempts] == [("WHATSAPP", "DEFER"), ("SMS", "SENT")]
    assert await db.fetchval("SELECT channel FROM outbound_message WHERE id = $1", template_only) == "WHATSAPP"


async def test_throttle_codes_from_the_sandbox_hold_messages_without_burning_attempts(
    db: asyncpg.Connection, db_dsn: str
) -> None:
    from outbound_sender.providers.transport import provider_client
    from outbound_sender.providers.whatsapp import WhatsAppProvider
    from outbound_sender.sandboxes.base import Rule
    from tests.integration.providers.conftest import serve

    app = whatsapp_sandbox.WhatsAppSandbox()
    app.config.rules = [Rule(pattern="0001$", action="error:80007"), Rule(pattern="0002$", action="error:130429")]
    app.config.webhooks = False
    async with serve(app) as url:
        client = provider_client(4, connect_timeout=1, read_timeout=5)
        provider = WhatsAppProvider(client, whatsapp_sandbox.account(url), ambiguous_retry=1)
        waba_limited = await enqueue(db, whatsapp(1, org="waba", body="x"))
        number_limited = await enqueue(db, whatsapp(2, org="num", body="x"))
        async with running_worker(db_dsn, ScriptedProvider(), providers=[provider]):
            await wait_for(db, "SELECT count(*) = 2 FROM outbound_attempt WHERE outcome = 'DEFER'")
    rows = {
        r["id"]: r
        for r in await db.fetch("SELECT * FROM outbound_message WHERE id = ANY($1)", [waba_limited, number_limited])
    }
    for message_id in (waba_limited, number_limited):
        assert (rows[message_id]["status"], rows[message_id]["attempt_count"]) == ("QUEUED", 0)
        assert rows[message_id]["error_code"] == "RATE_LIMIT_EXCEEDED"
    throttled = await db.fetchval(
        "SELECT throttle_until > now() + interval '30 seconds' FROM whatsapp_rate_limit WHERE org_id = 'waba'"
    )
    assert throttled, "80007 throttles the organisation (the runbook's throttle_until)"
    assert await db.fetchval("SELECT throttle_until FROM whatsapp_rate_limit WHERE org_id = 'num'") is None
    assert await db.fetchval("SELECT messages_sent_count FROM whatsapp_rate_limit WHERE org_id = 'waba'") == 0
