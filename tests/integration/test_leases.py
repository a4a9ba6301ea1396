"""Leases: expired ones are recovered; results are fenced by the lease they were claimed under."""

from __future__ import annotations

import uuid

import asyncpg

from outbound_sender.domain import CallResult, Channel, Outcome
from outbound_sender.store.gateway import as_arrays, message_from_row
from outbound_sender.store.queries import sql
from tests.workers import ScriptedProvider, enqueue_sms, one, running_worker, wait_for


async def claim(db: asyncpg.Connection, lease_seconds: float = 60, worker: str = "w-test") -> asyncpg.Record:
    [row] = await db.fetch(sql("claim_batch"), [c.value for c in Channel], 1, worker, lease_seconds)
    return row


async def complete_sent(db: asyncpg.Connection, row: asyncpg.Record) -> asyncpg.Record:
    message = message_from_row(row)
    result = CallResult(message, Outcome.SENT, "p", 5, provider_message_id="pm-1")
    [out] = await db.fetch(sql("complete_batch"), *as_arrays([result]), "w-test")
    return out


async def expire(db: asyncpg.Connection, message_id: int) -> None:
    await db.execute("UPDATE outbound_message SET leased_until = now() - interval '1 second' WHERE id = $1", message_id)


async def recover(db: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(await db.fetch(sql("recover_expired_leases"), 100))


async def test_an_expired_lease_is_recovered_and_the_message_sent(db: asyncpg.Connection, db_dsn: str) -> None:
    [message_id] = await enqueue_sms(db)
    await claim(db, lease_seconds=0.5, worker="dead-worker")
    async with running_worker(db_dsn, ScriptedProvider()) as worker:
        await wait_for(db, "SELECT status = 'SENT' FROM outbound_message WHERE id = $1", message_id)
    assert worker.metrics.recovered.labels("SMS", "QUEUED")._value.get() == 1
    attempts = await db.fetch(
        "SELECT attempt_no, outcome, error_code, ambiguous, worker_id FROM outbound_attempt ORDER BY attempt_no"
    )
    assert [tuple(a) for a in attempts] == [
        (1, "RETRY", "LEASE_EXPIRED", True, "dead-worker"),
        (2, "SENT", None, False, worker.settings.id),
    ]


async def test_recovery_never_touches_a_message_in_a_final_state(db: asyncpg.Connection) -> None:
    [message_id] = await enqueue_sms(db)
    row = await claim(db)
    await complete_sent(db, row)
    await db.execute("UPDATE outbound_message SET leased_until = now() - interval '1 hour' WHERE id = $1", message_id)
    assert await recover(db) == []
    assert await db.fetchval("SELECT status FROM outbound_message WHERE id = $1", message_id) == "SENT"


async def test_a_slow_send_whose_lease_expired_still_lands(db: asyncpg.Connection) -> None:
    """Recovered but not yet re-claimed: the late success is applied (no duplicate send)."""
    [message_id] = await enqueue_sms(db)
    row = await claim(db)
    await expire(db, message_id)
    assert [r["id"] for r in await recover(db)] == [message_id]
    out = await complete_sent(db, row)
    assert (out["applied"], out["status"]) == (True, "SENT")
    attempt = await one(db, "SELECT outcome, applied, error_code FROM outbound_attempt")
    assert tuple(attempt) == ("SENT", True, None)


async def test_a_result_overtaken_by_a_new_claim_changes_nothing(db: asyncpg.Connection) -> None:
    [message_id] = await enqueue_sms(db)
    old = await claim(db, worker="slow")
    await expire(db, message_id)
    await recover(db)
    new = await claim(db, worker="fresh")
    assert new["lease_id"] != old["lease_id"]
    stale = await complete_sent(db, old)
    assert stale["applied"] is False
    assert await db.fetchval("SELECT status FROM outbound_message WHERE id = $1", message_id) == "SENDING"
    fresh = await complete_sent(db, new)
    assert (fresh["applied"], fresh["status"]) == (True, "SENT")
    rows = await db.fetch("SELECT attempt_no, applied, worker_id FROM outbound_attempt ORDER BY attempt_no")
    assert [(r["attempt_no"], r["applied"]) for r in rows] == [(1, False), (2, True)]


async def test_an_unknown_lease_changes_nothing(db: asyncpg.Connection) -> None:
    [message_id] = await enqueue_sms(db)
    row = dict(await claim(db))
    row["lease_id"] = uuid.uuid4()
    out = await complete_sent(db, row)  # type: ignore[arg-type]
    assert out["applied"] is False
    assert await db.fetchval("SELECT status FROM outbound_message WHERE id = $1", message_id) == "SENDING"


async def test_out_of_attempts_a_recovered_message_is_dead_lettered(db: asyncpg.Connection) -> None:
    [message_id] = await enqueue_sms(db, max_attempts=1)
    await claim(db)
    await expire(db, message_id)
    [rec] = await recover(db)
    assert rec["status"] == "FAILED"
    row = await one(db, "SELECT status, error_code FROM outbound_message WHERE id = $1", message_id)
    assert tuple(row) == ("FAILED", "LEASE_EXPIRED")
