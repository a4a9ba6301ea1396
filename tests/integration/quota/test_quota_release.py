"""More quota releases the messages it held, within seconds (runbook scenario 4, by hand or by the
operator), with a live worker that polls only once a minute: the release's NOTIFY wakes it.

Held messages wait QUEUED with retry_at at the window's reset, a day away; nothing but the
database trigger on whatsapp_rate_limit (migration 0006) brings them forward.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from outbound_operator.db import Database
from outbound_sender.domain import Channel, NewMessage
from outbound_sender.store.db import create_pool
from outbound_sender.store.messages import enqueue_many
from tests.runbook import runbook_text, sql_statements
from tests.workers import ScriptedProvider, running_worker, statuses, wait_for

ORG = "ORG_ID"  # the runbook's placeholder, so its statements run verbatim
LEDGER = """INSERT INTO whatsapp_rate_limit (org_id, messages_sent_count, quota_limit, reset_at, throttle_until)
            VALUES ($1, 0, $2, now() + interval '1 day', $3)"""
HELD = """SELECT count(*) FROM outbound_message
           WHERE status = 'QUEUED' AND error_code = $1 AND retry_at > now() + interval '23 hours'"""
# Only a NOTIFY can wake the worker within the test's deadline: no poll, no control refresh.
QUIET: dict[str, Any] = {"poll_interval_ms": 60_000, "control_interval_ms": 60_000}
RELEASE_DEADLINE = 10.0  # "within seconds", on a busy machine


def whatsapp(count: int) -> list[NewMessage]:
    return [
        NewMessage(org_id=ORG, channel=Channel.WHATSAPP, to_recipient=f"+1555888{n:04d}", body="x")
        for n in range(count)
    ]


async def _set_limit_as_the_operator(dsn: str) -> None:
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        await Database(pool).set_ledger_limit(ORG, 100, 86_400)  # a QuotaPolicy raised to 100
    finally:
        await pool.close()


Change = Callable[[asyncpg.Connection, str], Awaitable[object]]
RAISES: dict[str, tuple[Change, int]] = {
    # name: (the change, how many of the 4 held messages it lets through)
    "manual quota_limit raise": (
        lambda db, _dsn: db.execute("UPDATE whatsapp_rate_limit SET quota_limit = 100 WHERE org_id = 'ORG_ID'"),
        4,
    ),
    "QuotaPolicy raise (operator)": (lambda _db, dsn: _set_limit_as_the_operator(dsn), 4),
    "count reset by hand": (
        lambda db, _dsn: db.execute("UPDATE whatsapp_rate_limit SET messages_sent_count = 0 WHERE org_id = 'ORG_ID'"),
        2,
    ),
    "window reset by hand": (
        lambda db, _dsn: db.execute("UPDATE whatsapp_rate_limit SET reset_at = now() WHERE org_id = 'ORG_ID'"),
        2,
    ),
}


@pytest.mark.parametrize("change", list(RAISES))
async def test_more_quota_sends_the_held_messages_within_seconds(
    db: asyncpg.Connection, db_dsn: str, change: str
) -> None:
    apply, released = RAISES[change]
    await db.execute(LEDGER, ORG, 2, None)
    await enqueue_many(db, whatsapp(6))
    provider = ScriptedProvider()
    async with running_worker(db_dsn, provider, **QUIET):
        await wait_for(db, "SELECT count(*) = 2 FROM outbound_message WHERE status = 'SENT'")
        await wait_for(db, HELD + " HAVING count(*) = 4", "QUOTA_EXCEEDED")
        started = time.monotonic()
        await apply(db, db_dsn)
        await wait_for(
            db,
            "SELECT count(*) = $1 FROM outbound_message WHERE status = 'SENT'",
            2 + released,
            timeout=RELEASE_DEADLINE,
        )
        took = time.monotonic() - started
        if released < 4:  # the rest is held again, until the new window's reset
            await wait_for(db, HELD + " HAVING count(*) = $2", "QUOTA_EXCEEDED", 4 - released)
    assert took < RELEASE_DEADLINE
    assert sum(provider.calls.values()) == 2 + released  # each sent once
    assert await statuses(db) == {"SENT": 2 + released, **({"QUEUED": 4 - released} if released < 4 else {})}
    assert await db.fetchval("SELECT max(attempt_count) FROM outbound_message WHERE status = 'QUEUED'") in (None, 0)
    # the scenario-5 view of the retry schedule no longer shows the day-long wait for released ones
    waiting = await db.fetchval("SELECT count(*) FROM outbound_attempt WHERE next_retry_at > now() + interval '1 hour'")
    assert waiting == 4 - released


async def test_lifting_a_throttle_by_hand_sends_what_it_held(db: asyncpg.Connection, db_dsn: str) -> None:
    await db.execute(LEDGER, ORG, 100, await db.fetchval("SELECT now() + interval '1 day'"))
    await enqueue_many(db, whatsapp(3))
    async with running_worker(db_dsn, ScriptedProvider(), **QUIET):
        await wait_for(db, HELD + " HAVING count(*) = 3", "RATE_LIMIT_EXCEEDED")
        await db.execute("UPDATE whatsapp_rate_limit SET throttle_until = NULL WHERE org_id = 'ORG_ID'")
        await wait_for(db, "SELECT count(*) = 3 FROM outbound_message WHERE status = 'SENT'", timeout=RELEASE_DEADLINE)


async def test_less_quota_and_the_workers_bookkeeping_release_nothing(db: asyncpg.Connection, db_dsn: str) -> None:
    """The runbook's halving, a reservation given back, and a provider throttle keep held
    messages where they are (no thundering herd of re-claims)."""
    await db.execute(LEDGER, ORG, 4, None)
    await enqueue_many(db, whatsapp(8))
    async with running_worker(db_dsn, ScriptedProvider(), **QUIET):
        await wait_for(db, HELD + " HAVING count(*) = 4", "QUOTA_EXCEEDED")
    [halve] = [s for s in sql_statements(runbook_text()) if "quota_limit * 0.5" in s]
    await db.execute(halve)
    await db.execute(
        "UPDATE whatsapp_rate_limit SET messages_sent_count = messages_sent_count - 1 WHERE org_id = 'ORG_ID'"
    )
    await db.execute(
        "UPDATE whatsapp_rate_limit SET throttle_until = now() + interval '1 minute' WHERE org_id = 'ORG_ID'"
    )
    assert await db.fetchval(HELD, "QUOTA_EXCEEDED") == 4
