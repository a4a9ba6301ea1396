"""The runbook's manual actions have the effect it promises, with a real worker running.

Each statement is taken verbatim from shared/runbook.md (found by a phrase it contains).
"""

from __future__ import annotations

import asyncio

import asyncpg

from outbound_sender.domain import Channel, ErrorCode, NewMessage, OutboundMessage
from outbound_sender.errors import RateLimitedError, TemporaryError
from outbound_sender.providers.base import SendResult
from outbound_sender.store.messages import enqueue
from outbound_sender.worker.retry import RetryPolicy
from tests.runbook import runbook_text, sql_statements
from tests.test_leases_support import claim_as_dead_worker
from tests.workers import ScriptedProvider, always_ok, enqueue_sms, one, running_worker, wait_for

STATEMENTS = sql_statements(runbook_text())


def runbook(phrase: str) -> str:
    [statement] = [s for s in STATEMENTS if phrase in s]
    return statement


SENT = "SELECT status = 'SENT' FROM outbound_message WHERE id = $1"


async def test_resetting_stale_sending_rows_gets_them_sent(db: asyncpg.Connection, db_dsn: str) -> None:
    [message_id] = await enqueue_sms(db)
    await claim_as_dead_worker(db, lease_seconds=3600)  # a lease far in the future: no auto recovery
    await db.execute("UPDATE outbound_message SET updated_at = now() - interval '20 minutes'")
    async with running_worker(db_dsn, ScriptedProvider()):
        await asyncio.sleep(0.5)
        assert await db.fetchval("SELECT status FROM outbound_message WHERE id = $1", message_id) == "SENDING"
        await db.execute(runbook("WHERE status = 'SENDING'"))
        await wait_for(db, SENT, message_id, timeout=5)


async def test_requeuing_failed_rows_gets_them_sent(db: asyncpg.Connection, db_dsn: str) -> None:
    provider_up = False

    def outage(message: OutboundMessage, call: int) -> SendResult | Exception:
        return always_ok(message, call) if provider_up else TemporaryError(ErrorCode.TEMPORARY_ERROR, "down")

    [message_id] = await enqueue_sms(db, max_attempts=2)
    async with running_worker(db_dsn, ScriptedProvider(outage)):
        await wait_for(db, "SELECT status = 'FAILED' FROM outbound_message WHERE id = $1", message_id)
        provider_up = True
        await db.execute(runbook("attempt_count = 0"))
        await wait_for(db, SENT, message_id, timeout=5)
    assert await db.fetchval("SELECT attempt_count FROM outbound_message WHERE id = $1", message_id) == 1


async def test_clearing_next_retry_at_sends_a_waiting_retry_on_the_next_cycle(
    db: asyncpg.Connection, db_dsn: str
) -> None:
    def throttled_for_an_hour(message: OutboundMessage, call: int) -> SendResult | Exception:
        if call == 1:
            return RateLimitedError(ErrorCode.RATE_LIMIT_EXCEEDED, "429", retry_after=3600)
        return always_ok(message, call)

    [message_id] = await enqueue_sms(db)
    patient = RetryPolicy(base_seconds=0.05, max_seconds=0.2, max_hint_seconds=86_400)
    async with running_worker(db_dsn, ScriptedProvider(throttled_for_an_hour), retry=patient):
        await wait_for(
            db,
            "SELECT retry_at > now() + interval '50 minutes' FROM outbound_message WHERE id = $1",
            message_id,
        )
        # An hour passes for updated_at (the runbook selects rows untouched for an hour).
        await db.execute(
            "UPDATE outbound_message SET updated_at = now() - interval '2 hours' WHERE id = $1", message_id
        )
        await db.execute(runbook("SET next_retry_at = NULL"))
        await wait_for(db, SENT, message_id, timeout=5)


async def test_moving_updated_at_into_the_future_defers_until_then(db: asyncpg.Connection, db_dsn: str) -> None:
    def whatsapp(template: str, to: str) -> NewMessage:
        return NewMessage(org_id="o", channel=Channel.WHATSAPP, to_recipient=to, template_code=template)

    bulk = await enqueue(db, whatsapp("newsletter", "+15551230001"))
    urgent = await enqueue(db, whatsapp("urgent_alert", "+15551230002"))
    await db.execute(runbook("INTERVAL '4 hours'"))
    async with running_worker(db_dsn, ScriptedProvider()):
        await wait_for(db, SENT, urgent)
        await asyncio.sleep(0.5)
        assert await db.fetchval("SELECT status FROM outbound_message WHERE id = $1", bulk) == "QUEUED"
        # Four hours pass: the deferral ends.
        await db.execute("UPDATE outbound_message SET updated_at = now() WHERE id = $1", bulk)
        await wait_for(db, SENT, bulk, timeout=5)


async def test_halving_the_quota_limit_is_enforced_from_the_next_send(db: asyncpg.Connection, db_dsn: str) -> None:
    await db.execute(
        "INSERT INTO whatsapp_rate_limit (org_id, messages_sent_count, quota_limit) VALUES ('ORG_ID', 4, 10)"
    )
    await db.execute(runbook("quota_limit * 0.5"))
    ids = [
        await enqueue(db, NewMessage(org_id="ORG_ID", channel=Channel.WHATSAPP, to_recipient="+15551230000", body="x"))
        for _ in range(3)
    ]
    async with running_worker(db_dsn, ScriptedProvider()):
        await wait_for(db, "SELECT count(*) = 1 FROM outbound_message WHERE status = 'SENT'")
        await asyncio.sleep(0.5)
    rows = await db.fetch("SELECT status, error_code FROM outbound_message WHERE id = ANY($1) ORDER BY id", ids)
    assert sorted(tuple(r) for r in rows) == [
        ("QUEUED", "QUOTA_EXCEEDED"),
        ("QUEUED", "QUOTA_EXCEEDED"),
        ("SENT", None),
    ]
    quota = await one(db, "SELECT messages_sent_count, quota_limit FROM whatsapp_rate_limit WHERE org_id = 'ORG_ID'")
    assert tuple(quota) == (5, 5)
    deferred = await db.fetchval("SELECT count(*) FROM outbound_message WHERE attempt_count = 0 AND status = 'QUEUED'")
    assert deferred == 2


async def test_archiving_failed_messages_keeps_their_attempts(db: asyncpg.Connection, db_dsn: str) -> None:
    """Scenario 2, step 5, both statements as written: the archived messages' attempt history is
    kept (outbound_attempt_archive), attempt for attempt; messages that stay keep theirs in place."""

    def throttled(message: OutboundMessage, call: int) -> SendResult | Exception:
        # a throttle: retried, then dead-lettered, without opening the worker's circuit
        return RateLimitedError(ErrorCode.RATE_LIMIT_EXCEEDED, f"429 ({call})", retry_after=0.05)

    old = await enqueue_sms(db, 3, max_attempts=3)
    recent = await enqueue_sms(db, 1, max_attempts=2)
    async with running_worker(db_dsn, ScriptedProvider(throttled)):
        await wait_for(db, "SELECT count(*) = 4 FROM outbound_message WHERE status = 'FAILED'")
    await db.execute("UPDATE outbound_message SET updated_at = now() - interval '8 days' WHERE id = ANY($1)", old)
    columns = "outbound_message_id, attempt_no, outcome, error_code, error_message, created_at"
    attempts = f"SELECT {columns} FROM outbound_attempt WHERE outbound_message_id = ANY($1) ORDER BY 1, 2"
    before = await db.fetch(attempts, old)
    assert len(before) == 9  # three attempts each, written by the worker

    await db.execute(runbook("INSERT INTO outbound_message_archive"))
    await db.execute(runbook("DELETE FROM outbound_message"))

    assert await db.fetchval("SELECT count(*) FROM outbound_message WHERE id = ANY($1)", old) == 0
    assert await db.fetchval("SELECT count(*) FROM outbound_attempt WHERE outbound_message_id = ANY($1)", old) == 0
    kept = await db.fetch(
        f"""SELECT {", ".join("a." + c for c in columns.split(", "))}
              FROM outbound_message_archive m JOIN outbound_attempt_archive a ON a.outbound_message_id = m.id
             WHERE m.id = ANY($1) ORDER BY 1, 2""",
        old,
    )
    assert [tuple(r) for r in kept] == [tuple(r) for r in before]
    assert len(await db.fetch(attempts, recent)) == 2
    archived = "SELECT count(*) FROM outbound_attempt_archive WHERE outbound_message_id = ANY($1)"
    assert await db.fetchval(archived, recent) == 0
