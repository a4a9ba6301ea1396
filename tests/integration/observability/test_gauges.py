"""Database-derived gauges against a real PostgreSQL: values, one cheap query, failure handling."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from outbound_sender.metrics import Metrics
from outbound_sender.observability.refresher import GaugeRefresher
from outbound_sender.store.queries import sql
from outbound_sender.store.snapshot import read_snapshot
from tests.pg import with_database

SEED = """
INSERT INTO outbound_message (org_id, channel, status, to_recipient, attempt_count, max_attempts,
                              updated_at, created_at)
VALUES ('o1', 'SMS', 'QUEUED', '+15550001001', 0, 5, now(), now()),
       ('o1', 'SMS', 'QUEUED', '+15550001002', 3, 5, now() - interval '3 hours', now() - interval '3 hours'),
       ('o1', 'SMS', 'QUEUED', '+15550001003', 4, 5, now() - interval '1 hour', now() - interval '1 hour'),
       ('o1', 'EMAIL', 'SENDING', 'a@example.com', 1, 5, now(), now()),
       ('o1', 'EMAIL', 'SENT', 'b@example.com', 1, 5, now(), now()),
       ('o1', 'EMAIL', 'SENT', 'c@example.com', 1, 5, now(), now() - interval '2 days'),
       ('o1', 'WHATSAPP', 'FAILED', '+15550001004', 5, 5, now(), now()),
       ('o1', 'WHATSAPP', 'FAILED', '+15550001005', 1, 1, now(), now()),
       ('o1', 'WHATSAPP', 'FAILED', '+15550001006', 1, 5, now(), now()),
       ('o1', 'SMS', 'CANCELLED', '+15550001007', 0, 5, now(), now());
INSERT INTO whatsapp_rate_limit (org_id, messages_sent_count, quota_limit, reset_at, throttle_until)
VALUES ('near', 950, 1000, now() + interval '1 hour', now() + interval '5 minutes'),
       ('calm', 10, 1000, now() + interval '1 hour', NULL),
       ('elapsed', 999, 1000, now() - interval '1 minute', NULL);
"""


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_gauges_are_absent_until_the_first_refresh() -> None:
    found = samples(Metrics())
    assert not [name for name, _ in found if name.startswith(("outbound_message_queue", "whatsapp_quota"))]


async def test_refresh_reads_queue_dead_letters_stuck_and_quota(db: asyncpg.Connection, db_dsn: str) -> None:
    await db.execute(SEED)
    metrics = Metrics()
    await GaugeRefresher(db_dsn, metrics, interval_seconds=1).refresh_once()
    s = samples(metrics)
    depth = {
        status: s[("outbound_message_queue_depth", (("status", status),))]
        for status in ("queued", "sending", "sent", "failed")
    }
    assert depth == {"queued": 3, "sending": 1, "sent": 1, "failed": 3}
    assert s[("outbound_message_dead_letter_queue_size", ())] == 2
    assert s[("outbound_message_stuck_messages", ())] == 1
    assert s[("outbound_message_oldest_due_age_seconds", ())] >= 3 * 3600 - 60
    assert s[("whatsapp_quota_used", (("org_id", "near"),))] == 950
    assert s[("whatsapp_quota_remaining", (("org_id", "near"),))] == 50
    assert s[("whatsapp_quota_limit", (("org_id", "near"),))] == 1000
    assert s[("whatsapp_quota_throttled", (("org_id", "near"),))] == 1
    assert s[("whatsapp_quota_throttled", (("org_id", "calm"),))] == 0
    assert s[("whatsapp_quota_used", (("org_id", "elapsed"),))] == 0, "an elapsed window counts as reset"
    assert s[("outbound_metrics_last_refresh_timestamp_seconds", ())] > 0


async def test_label_values_carry_no_recipients_or_ids(db: asyncpg.Connection, db_dsn: str) -> None:
    await db.execute(SEED)
    metrics = Metrics()
    await GaugeRefresher(db_dsn, metrics, interval_seconds=1).refresh_once()
    text = generate_latest(metrics.registry).decode()
    assert "+1555" not in text
    assert "@example.com" not in text


async def test_organisations_leave_the_gauges_when_their_row_goes(db: asyncpg.Connection, db_dsn: str) -> None:
    await db.execute(SEED)
    metrics = Metrics()
    refresher = GaugeRefresher(db_dsn, metrics, interval_seconds=1)
    await refresher.refresh_once()
    await db.execute("DELETE FROM whatsapp_rate_limit WHERE org_id = 'calm'")
    await refresher.refresh_once()
    assert ("whatsapp_quota_used", (("org_id", "calm"),)) not in samples(metrics)


async def test_quota_labels_are_capped_closest_to_the_limit_first(db: asyncpg.Connection) -> None:
    await db.execute(SEED)
    snapshot = await read_snapshot(db, quota_orgs_max=1)
    assert [q.org_id for q in snapshot.quotas] == ["near"]


def scans(node: dict[str, Any]) -> list[tuple[str, str]]:
    found = [(node["Node Type"], node.get("Relation Name", ""))] if "Relation Name" in node else []
    for child in node.get("Plans", []):
        found += scans(child)
    return found


async def test_the_snapshot_is_one_statement_that_reads_indexes(db: asyncpg.Connection) -> None:
    """With sequential scans priced out, the plan reads outbound_message only through indexes."""
    await db.execute(SEED)
    await db.execute("ANALYZE outbound_message")
    await db.execute("SET enable_seqscan = off")
    plan = await db.fetchval("EXPLAIN (FORMAT JSON) " + sql("metrics_snapshot"), 500)
    found = scans(json.loads(plan)[0]["Plan"] if isinstance(plan, str) else plan[0]["Plan"])
    on_messages = [kind for kind, relation in found if relation == "outbound_message"]
    assert len(on_messages) == 4, found
    assert "Seq Scan" not in on_messages, found


async def test_a_failed_refresh_keeps_the_last_values_and_counts_the_error(
    db: asyncpg.Connection, db_dsn: str, pg_server: object
) -> None:
    await db.execute(SEED)
    metrics = Metrics()
    await GaugeRefresher(db_dsn, metrics, interval_seconds=1).refresh_once()
    broken = GaugeRefresher(with_database(db_dsn, "no_such_database"), metrics, interval_seconds=1)
    with pytest.raises(asyncpg.PostgresError):
        await broken.refresh_once()
    s = samples(metrics)
    assert s[("outbound_metrics_refresh_errors_total", ())] == 1
    assert s[("outbound_message_dead_letter_queue_size", ())] == 2


async def test_run_refreshes_on_its_interval_until_stopped(db: asyncpg.Connection, db_dsn: str) -> None:
    metrics = Metrics()
    stop = asyncio.Event()
    task = asyncio.create_task(GaugeRefresher(db_dsn, metrics, interval_seconds=0.05).run(stop))
    async with asyncio.timeout(10):
        while metrics.database.snapshot is None:
            await asyncio.sleep(0.01)
    await db.execute(SEED)
    async with asyncio.timeout(10):
        while (snap := metrics.database.snapshot) is None or snap.statuses["queued"] != 3:
            await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
