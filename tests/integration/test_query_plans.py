"""Query-plan regression: the worker's hot-path statements use their indexes (EXPLAIN FORMAT JSON)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import asyncpg
import pytest

from bench import index_writes
from outbound_operator.db import sql as operator_sql
from outbound_sender.store.queries import sql

ROWS = 50_000
# complete_batch's arrays for one message that was SENT.
ONE_SENT: list[list[Any]] = [[1], [None], [1], ["SENT"], [None], [None], ["p"], [None], [None], ["x"], [201], [5]]
ONE_SENT += [[None], [False], ["SMS"]]


def index_names(plan: dict[str, Any]) -> set[str]:
    found = {plan["Index Name"]} if "Index Name" in plan else set()
    for child in plan.get("Plans", []):
        found |= index_names(child)
    return found


def scans_seq(plan: dict[str, Any], table: str) -> bool:
    if plan.get("Node Type") == "Seq Scan" and plan.get("Relation Name") == table:
        return True
    return any(scans_seq(child, table) for child in plan.get("Plans", []))


async def explain(db: asyncpg.Connection, statement: str, *args: Any) -> dict[str, Any]:
    transaction = db.transaction()
    await transaction.start()
    try:
        raw = await db.fetchval("EXPLAIN (FORMAT JSON) " + statement, *args)
    finally:
        await transaction.rollback()
    document = json.loads(raw) if isinstance(raw, str) else raw
    plan: dict[str, Any] = document[0]["Plan"]
    return plan


@pytest.fixture
async def busy_db(db: asyncpg.Connection) -> asyncpg.Connection:
    """A realistic table: mostly sent history, some queued, a few sending, some with retries."""
    await db.execute(
        f"""
        INSERT INTO outbound_message (org_id, channel, status, to_recipient, priority, leased_until)
        SELECT 'org' || (n % 50),
               (ARRAY['SMS','EMAIL','WHATSAPP'])[1 + n % 3],
               CASE WHEN n % 20 = 0 THEN 'QUEUED' WHEN n % 97 = 0 THEN 'SENDING'
                    WHEN n % 31 = 0 THEN 'FAILED' ELSE 'SENT' END,
               '+1555' || lpad(n::text, 7, '0'), n % 3,
               CASE WHEN n % 97 = 0 THEN now() + interval '1 minute' END
          FROM generate_series(1, {ROWS}) AS n
        """
    )
    await db.execute(
        """INSERT INTO outbound_attempt (outbound_message_id, attempt_no, channel, outcome, next_retry_at)
           SELECT id, 1, channel, 'RETRY', now() + interval '1 hour' FROM outbound_message WHERE id % 40 = 0"""
    )
    await db.execute("ANALYZE")
    return db


async def test_claim_uses_the_partial_claim_index(busy_db: asyncpg.Connection) -> None:
    plan = await explain(busy_db, sql("claim_batch"), ["SMS", "EMAIL", "WHATSAPP"], 10, "w", 30.0)
    assert "idx_outbound_message_claim" in index_names(plan)
    assert not scans_seq(plan, "outbound_message")


async def test_lease_recovery_reads_the_sending_rows_by_the_runbooks_status_index(busy_db: asyncpg.Connection) -> None:
    """Migration 0012 dropped the lease index (one more entry written at every claim): the SENDING
    rows, the ones in flight, are found through idx_outbound_message_status_created."""
    plan = await explain(busy_db, sql("recover_expired_leases"), 500)
    assert "idx_outbound_message_status_created" in index_names(plan)
    assert not scans_seq(plan, "outbound_message")


async def test_the_operators_provider_call_counts_read_recent_attempts_by_the_range_index(
    busy_db: asyncpg.Connection,
) -> None:
    """idx_outbound_attempt_provider_created is a BRIN index since migration 0012 (almost nothing to
    write per attempt): a window of recent attempts is still a range scan, not a scan of the table."""
    await busy_db.execute(
        f"""INSERT INTO outbound_attempt (outbound_message_id, attempt_no, channel, provider, outcome, created_at)
            SELECT id, 2, channel, (ARRAY['twilio','sendgrid','whatsapp'])[1 + id % 3], 'SENT',
                   now() - ({ROWS} - id) * interval '10 seconds'
              FROM outbound_message ORDER BY id"""
    )
    await busy_db.execute("VACUUM ANALYZE outbound_attempt")
    plan = await explain(
        busy_db, operator_sql("provider_calls"), "twilio", dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    )
    assert "idx_outbound_attempt_provider_created" in index_names(plan)
    assert not scans_seq(plan, "outbound_attempt")


async def test_completion_looks_messages_up_by_primary_key(busy_db: asyncpg.Connection) -> None:
    plan = await explain(busy_db, sql("complete_batch"), *ONE_SENT, "w")
    assert "outbound_message_pkey" in index_names(plan)
    assert not scans_seq(plan, "outbound_message")


# What one message's claim + completion may write index entries into (migration 0012): the primary
# keys, the runbook's two named indexes (every status change is a non-HOT update, since status is
# indexed), the API's main list index, the receipts' provider-id look-up and the attempt's own key.
# The partial indexes on dossier, correlation, template and idempotency key join when the message
# carries them.
HOT_PATH_INDEXES = {
    "outbound_message_pkey",
    "idx_outbound_message_status_created",
    "idx_outbound_message_channel_status",
    "idx_outbound_message_org_created",
    "idx_outbound_message_provider_id",
    "outbound_attempt_pkey",
    "outbound_attempt_outbound_message_id_attempt_no_key",
}
OPTIONAL_COLUMNS_INDEXES = {
    "idx_outbound_message_org_dossier",
    "idx_outbound_message_org_correlation",
    "idx_outbound_message_org_template",
    "uq_outbound_message_idempotency",
}


@pytest.mark.parametrize("full", [False, True], ids=["plain message", "message with every optional key"])
async def test_a_message_lifecycle_writes_only_the_index_entries_it_needs(db_dsn: str, full: bool) -> None:
    """Read from the WAL: no entry in the lease index (dropped), none in org_status for SENDING or
    SENT rows (partial), at most the occasional range summary in the BRIN provider_created index."""
    written = await index_writes.entries_per_message(db_dsn, full=full)
    btree = {name for name, per_message in written.items() if per_message >= 0.5}
    assert btree == HOT_PATH_INDEXES | (OPTIONAL_COLUMNS_INDEXES if full else set()), written
    assert written.get("idx_outbound_attempt_provider_created", 0) < 0.5, written


async def test_runbook_retry_schedule_lookup_uses_the_retry_index(busy_db: asyncpg.Connection) -> None:
    plan = await explain(busy_db, "SELECT * FROM outbound_attempt WHERE next_retry_at < now() + interval '1 minute'")
    assert "idx_outbound_attempt_retry_at" in index_names(plan)


async def test_quota_reservation_uses_the_primary_key(busy_db: asyncpg.Connection) -> None:
    await busy_db.execute(
        "INSERT INTO whatsapp_rate_limit (org_id) SELECT 'org' || n FROM generate_series(1, 5000) n; ANALYZE"
    )
    plan = await explain(busy_db, sql("quota_reserve"), "org7", 86400.0, 90)
    assert "whatsapp_rate_limit_pkey" in index_names(plan)


@pytest.mark.parametrize(("our_id", "provider_id"), [(4000, "SM1"), (None, "SM1")])
async def test_a_receipt_finds_its_message_and_attempts_by_index(
    busy_db: asyncpg.Connection, our_id: int | None, provider_id: str
) -> None:
    await busy_db.execute("UPDATE outbound_message SET provider_message_id = 'SM' || id WHERE id % 3 = 1; ANALYZE")
    arrays: list[list[Any]] = [["twilio"], ["SM1:sent"], ["sent"], ["SENT"], [provider_id], [our_id]]
    arrays += [[dt.datetime.now(dt.UTC)], [None], [None], [None], ["SMS"]]
    plan = await explain(busy_db, sql("record_delivery_events"), *arrays)
    names = index_names(plan)
    assert ("outbound_message_pkey" if our_id else "idx_outbound_message_provider_id") in names
    assert "outbound_attempt_outbound_message_id_attempt_no_key" in names
    assert not scans_seq(plan, "outbound_message")
    assert not scans_seq(plan, "outbound_attempt")


async def test_the_receipts_trace_contexts_are_read_by_primary_key(busy_db: asyncpg.Connection) -> None:
    """Tracing on (docs/tracing.md): each webhook request reads its messages' stored context."""
    plan = await explain(busy_db, sql("message_traceparents"), [4000, 4002])
    assert "outbound_message_pkey" in index_names(plan)
    assert not scans_seq(plan, "outbound_message")


async def test_the_receipt_check_before_a_retry_uses_the_message_indexes(busy_db: asyncpg.Connection) -> None:
    await busy_db.execute(
        """INSERT INTO outbound_delivery_event (provider, provider_event_id, outbound_message_id, raw_status,
                                                delivery_status, occurred_at)
           SELECT 'twilio', 'e' || id, id, 'sent', 'SENT', now() FROM outbound_message WHERE id % 2 = 0;
           ANALYZE"""
    )
    plan = await explain(busy_db, sql("accepted_receipt"), 4000)
    assert "idx_outbound_delivery_event_message" in index_names(plan)
    assert not scans_seq(plan, "outbound_delivery_event")
    assert not scans_seq(plan, "outbound_attempt")


async def test_quota_release_finds_held_messages_by_the_waiting_index(busy_db: asyncpg.Connection) -> None:
    """The trigger behind a quota raise (migration 0006) looks up the organisation's waiting
    WhatsApp messages by idx_outbound_message_whatsapp_waiting, not by scanning the queue.
    auto_explain shows the plan of the statement run inside the trigger."""
    await busy_db.execute(
        """UPDATE outbound_message SET error_code = 'QUOTA_EXCEEDED', retry_at = now() + interval '1 day'
            WHERE status = 'QUEUED' AND channel = 'WHATSAPP';
           INSERT INTO whatsapp_rate_limit (org_id, quota_limit) SELECT 'org' || n, 10 FROM generate_series(0, 49) n;
           ANALYZE"""
    )
    plans: list[str] = []
    busy_db.add_log_listener(lambda _conn, message: plans.append(str(message)))
    await busy_db.execute(
        """LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0;
           SET auto_explain.log_nested_statements = on; SET client_min_messages = log"""
    )
    await busy_db.execute("UPDATE whatsapp_rate_limit SET quota_limit = 20 WHERE org_id = 'org20'")
    await busy_db.execute("RESET client_min_messages; SET auto_explain.log_min_duration = -1")
    [release] = [p for p in plans if "UPDATE outbound_message m" in p]
    assert "idx_outbound_message_whatsapp_waiting" in release, release
    assert "Seq Scan on outbound_message" not in release, release
    released = "SELECT count(*) FROM outbound_message WHERE org_id = $1 AND channel = 'WHATSAPP' AND retry_at <= now()"
    assert await busy_db.fetchval(released, "org20") > 0


def function_scans(plan: dict[str, Any]) -> bool:
    if plan.get("Node Type") == "Function Scan":
        return True
    return any(function_scans(child) for child in plan.get("Plans", []))


async def test_an_ops_batch_uses_an_index_through_the_inlined_selection(busy_db: asyncpg.Connection) -> None:
    """Each batch of an ops command is an index scan: ops_selected (migration 0007) is inlined, not a
    function scan that would build the whole selection again for every batch."""
    selection = ["FAILED", None, None, ["TEMPORARY_ERROR"], None, None, None, None, None, False]
    plan = await explain(busy_db, sql("ops_match"), *selection, 25_000, 50_000, 500)
    assert not function_scans(plan)
    assert index_names(plan) & {"outbound_message_pkey", "idx_outbound_message_status_created"}
    assert not scans_seq(plan, "outbound_message")


@pytest.fixture
async def busy_outbox(busy_db: asyncpg.Connection) -> asyncpg.Connection:
    """Callback endpoints for a few organisations and an outbox mostly delivered, some pending."""
    await busy_db.execute(
        """INSERT INTO outbound_callback_endpoint (org_id, url, secret)
           SELECT 'org' || n, 'https://hooks.example/' || n, 'whsec_x' FROM generate_series(0, 9) n;
           INSERT INTO outbound_callback_outbox (endpoint_id, org_id, outbound_message_id, event, payload, status,
                                                 next_attempt_at)
           SELECT e.id, m.org_id, m.id, 'SENT', '{}'::jsonb,
                  CASE WHEN m.id % 25 = 0 THEN 'PENDING' ELSE 'DELIVERED' END,
                  now() + (m.id % 7 - 3) * interval '1 minute'
             FROM outbound_message m JOIN outbound_callback_endpoint e ON e.org_id = m.org_id;
           ANALYZE"""
    )
    return busy_db


async def test_the_callback_claim_uses_the_due_index(busy_outbox: asyncpg.Connection) -> None:
    plan = await explain(busy_outbox, sql("claim_callbacks"), 50, 40.0)
    assert "idx_outbound_callback_outbox_due" in index_names(plan)
    assert not scans_seq(plan, "outbound_callback_outbox")
    stats = await explain(busy_outbox, sql("callback_outbox_stats"))
    assert "idx_outbound_callback_outbox_due" in index_names(stats)
    assert not scans_seq(stats, "outbound_callback_outbox")


async def test_completion_looks_callback_endpoints_up_by_organisation(busy_outbox: asyncpg.Connection) -> None:
    plan = await explain(busy_outbox, sql("complete_batch"), *ONE_SENT, "w")
    assert not scans_seq(plan, "outbound_message")
    assert not scans_seq(plan, "outbound_callback_outbox")
